/**
 * `--pretrained NAME[:PRECISION]` for the commands that take a model file (serve, classify, inspect, parity): a model of
 * @capsnet-onnx/mnist instead, so a user classifies a digit before training anything.
 */
import { PRETRAINED_NAMES, PRETRAINED_PRECISIONS, type PretrainedName, type PretrainedPrecision, pretrained } from '@capsnet-onnx/mnist';
import { existsSync } from 'node:fs';
import { Option } from 'commander';

/** NAME for fp32, NAME:fp16 and NAME:int8 for the smaller files. */
export const PRETRAINED_CHOICES: string[] = PRETRAINED_NAMES.flatMap((name) =>
  PRETRAINED_PRECISIONS.map((precision) => (precision === 'fp32' ? name : `${name}:${precision}`)),
);

export function pretrainedOption(): Option {
  return new Option('--pretrained <model>', 'a pretrained model (@capsnet-onnx/mnist) instead of a file; :fp16 or :int8 for the smaller files').choices(
    PRETRAINED_CHOICES,
  );
}

/** The model file of a `--pretrained` choice (commander has checked it against PRETRAINED_CHOICES). */
export function pretrainedModelPath(choice: string): string {
  const [name, precision = 'fp32'] = choice.split(':') as [PretrainedName, PretrainedPrecision?];
  return pretrained(name, precision).model;
}

/** The fp32 file of a `--pretrained` choice: the weights parity's reference runs (no checkpoint ships). */
export function pretrainedReferencePath(choice: string): string {
  return pretrained(choice.split(':')[0] as PretrainedName, 'fp32').model;
}

/**
 * The dimensions file (what each capsule dimension does) of a `--pretrained` choice, measured on its fp32 file;
 * undefined for a model shipped without one.
 */
export function pretrainedDimensionsPath(choice: string): string | undefined {
  const file = pretrained(choice.split(':')[0] as PretrainedName).dimensions;
  return existsSync(file) ? file : undefined;
}

/** A command line that cannot run as given (no model, both a model and --pretrained, no images): `--json`'s USAGE. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * The model file a command runs: its model argument, or the `--pretrained` model.
 * @throws UsageError (one line, naming both ways) when neither or both are given.
 */
export function chooseModel(command: string, file: string | undefined, choice: string | undefined): string {
  if (file !== undefined && choice !== undefined) {
    throw new UsageError(`${command}: give a model file or --pretrained ${choice}, not both`);
  }
  if (choice !== undefined) return pretrainedModelPath(choice);
  if (file !== undefined) return file;
  throw new UsageError(`${command} needs a model: a model.onnx from \`capsnet export\`, or --pretrained ${PRETRAINED_CHOICES[0] ?? 'NAME'}`);
}
