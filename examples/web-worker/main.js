// The page: starts the worker, sends it the digits, shows what it answers. The model runs in the worker, so the
// page stays responsive while onnxruntime-web compiles its wasm, loads the model and classifies.
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

async function main() {
  // digits.u8: N test digits of 28x28 bytes (0-255), one after the other (see README.md).
  const digits = new Uint8Array(await (await fetch('/digits.u8')).arrayBuffer());
  return await new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => (data.error ? reject(new Error(data.error)) : resolve(data));
    worker.onerror = (e) => reject(new Error(e.message));
    // The buffer is transferred, not copied.
    worker.postMessage({ digits }, [digits.buffer]);
  });
}

main().then(
  (result) => {
    globalThis.exampleResult = result;
    document.getElementById('out').textContent = `${result.device} (in a worker): ${JSON.stringify(result.predictions)}`;
  },
  (error) => {
    globalThis.exampleResult = { error: String(error?.message ?? error) };
    document.getElementById('out').textContent = String(error?.message ?? error);
  },
);
