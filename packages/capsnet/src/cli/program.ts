/**
 * The `capsnet` command and its subcommands, registered but not run: main.ts parses process.argv with it, and
 * tests parse argument lists with it in-process (every numeric flag is parsed by cli/args.ts).
 */
import { Command } from 'commander';
import { DEVICE_TABLE, type DeviceRow } from '@capsnet-onnx/runtime/internal';
import { packageVersion } from '../files/package-version.ts';
import { registerTrainCommands } from './train.ts';
import { registerServeCommands } from './serve.ts';
import { registerExportCommands } from './export.ts';
import { registerRuntimeCommands } from './classify.ts';
import { registerParityCommands } from './parity.ts';
import { registerExperimentCommands } from './experiment.ts';
import { registerCorpusCommands } from './corpus.ts';
import { registerPlotCommands } from './plot.ts';

/** `devices`: the device table the `--device` and parity choices come from (a test passes its own rows). */
export function createProgram(devices: readonly DeviceRow[] = DEVICE_TABLE): Command {
  const program = new Command('capsnet')
    .description('Train a CapsNet in TensorFlow.js, export it to ONNX with routing unrolled, and serve it with ONNX Runtime.')
    .version(packageVersion(), '-V, --version', 'print the capsnet-onnx version')
    // The error stays the last line a user sees; the full help is one flag away.
    .showHelpAfterError('(add --help for usage)');
  registerTrainCommands(program);
  registerPlotCommands(program);
  registerServeCommands(program, devices);
  registerExportCommands(program);
  registerRuntimeCommands(program, devices);
  registerParityCommands(program, devices);
  registerExperimentCommands(program);
  registerCorpusCommands(program);
  return program;
}
