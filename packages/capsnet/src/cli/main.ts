/**
 * `capsnet`: one command line for the whole pipeline. Each folder registers its own subcommands and loads its
 * heavy modules only when one of them runs, so `capsnet classify` never loads TensorFlow.js.
 */
import { Command } from 'commander';
import { packageVersion } from '../files/package-version.ts';
import { registerTrainCommands } from './train.ts';
import { registerServeCommands } from './serve.ts';
import { registerExportCommands } from './export.ts';
import { registerRuntimeCommands } from './classify.ts';
import { registerParityCommands } from './parity.ts';
import { registerExperimentCommands } from './experiment.ts';

const program = new Command('capsnet')
  .description('Train a CapsNet in TensorFlow.js, export it to ONNX with routing unrolled, and serve it with ONNX Runtime.')
  .version(packageVersion(), '-V, --version', 'print the capsnet-onnx version')
  .showHelpAfterError();

registerTrainCommands(program);
registerServeCommands(program);
registerExportCommands(program);
registerRuntimeCommands(program);
registerParityCommands(program);
registerExperimentCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const error = e as Error;
  // Errors reach the user as one line naming the problem and the fix; CAPSNET_DEBUG=1 shows the stack.
  console.error(`capsnet: ${error.message}`);
  if (process.env.CAPSNET_DEBUG) console.error(error.stack);
  process.exitCode = 1;
}
// A command is finished when its action returns (serve returns only after shutdown); backends such as wasm's
// thread pool keep workers that would otherwise hold the process open.
process.exit();
