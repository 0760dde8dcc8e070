/**
 * `capsnet`: one command line for the whole pipeline. Each folder registers its own subcommands and loads its
 * heavy modules only when one of them runs, so `capsnet classify` never loads TensorFlow.js.
 */
import { envFlag } from '../env/env.ts';
import { OutputExistsError, systemErrorLine } from '../files/atomic.ts';
import { createProgram } from './program.ts';

function userMessage(error: Error): string {
  if (error instanceof OutputExistsError) return error.commandLineMessage;
  const system = systemErrorLine(error);
  if (system) return system;
  if (error instanceof RangeError && /Invalid typed array length|Array buffer allocation failed|Invalid array length/.test(error.message)) {
    return `an input asks for more memory than can be allocated (${error.message}): check the sizes in the data or model files`;
  }
  return error.message;
}

const program = createProgram();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const error = e as Error;
  // Errors reach the user as one line naming the problem and the fix; CAPSNET_DEBUG=1 shows the stack. System
  // errors (disk full, read-only, permissions...) that no layer caught are turned into that line here.
  console.error(`capsnet: ${userMessage(error)}`);
  if (envFlag('CAPSNET_DEBUG')) console.error(error.stack);
  process.exitCode = 1;
}
// A command is finished when its action returns (serve returns only after shutdown); backends such as wasm's
// thread pool keep workers that would otherwise hold the process open. Output still queued for a pipe is
// flushed first: exiting at once cut `classify --json` of 2,000 images short.
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
process.exit();
