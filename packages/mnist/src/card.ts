/** The shape of a model card: what `scripts/pretrained.ts` measures and writes for each pretrained model. */

/** One backend of the parity check (`capsnet parity`): the ONNX file against the tfjs reference on the same inputs. */
export interface ParityRow {
  /** e.g. node-cpu, node-wasm, chromium-wasm (`capsnet parity --devices`). */
  backend: string;
  /** `capsnet parity`'s verdict: pass, fail, error or skipped (with the reason in `note`). */
  status: string;
  /** Largest |difference| of the capsule lengths from the reference. */
  maxAbsLengths: number | null;
  /** Inputs whose predicted class matches the reference's (near-ties excepted: see the parity README). */
  agree: string;
  note?: string;
}

/** Test results of one exported file on the official 10,000 test digits. */
export interface PrecisionResult {
  /** Fraction correct, the longest capsule against the label. */
  accuracy: number;
  /** Wilson score interval of the accuracy at 95%. */
  interval95: [number, number];
  /** Misclassified test digits, and per true class 0..9. */
  errors: number;
  perClassErrors: number[];
  /** Bytes of the model file and of its decoder. */
  modelBytes: number;
  decoderBytes: number;
}

export interface ModelCard {
  name: string;
  /** `capsnet train --preset`: paper (Sabour et al. 2017, section 4) or small (conv1 64, 8 primary maps). */
  preset: string;
  parameters: number;
  description: string;
  data: { name: string; source: string; train: number; test: number; augmentation: string };
  training: {
    command: string;
    seed: number;
    epochs: number;
    batchSize: number;
    backend: string;
    wallSeconds: number;
    machine: string;
    /** Test accuracy after each epoch (the run's metrics.jsonl), fp32 tfjs. */
    accuracyByEpoch: number[];
    /** How the run was chosen or stopped where it was more than its command, e.g. continued after seeing test accuracy. */
    note?: string;
  };
  /** The exported files on the official test set, evaluated with onnxruntime-node's cpu execution provider. */
  results: Record<'fp32' | 'fp16' | 'int8', PrecisionResult>;
  parity: ParityRow[];
  /** capsnet-onnx version and date (UTC) of the export. */
  exportedWith: string;
  date: string;
}
