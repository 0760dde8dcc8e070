/**
 * A few real test images for the page's "pick a digit" strip, from the data set the model was trained on
 * (its `capsnet.dataset` metadata; the embedded MNIST sample by default). Loaded once, on first request.
 */
import { basename, resolve } from 'node:path';
import { type ModelMetadata, publicDataName } from '@capsnet-onnx/core';

export interface Sample {
  /** Index in the data set's test split. */
  index: number;
  label: number;
  labelName: string;
  /** H*W*C pixels in [0, 1], rounded to 3 decimals. */
  pixels: number[];
}

export interface SampleSet {
  dataset: string;
  shape: [number, number, number];
  samples: Sample[];
  /** Why there are no samples, when there are none. */
  note?: string;
}

/**
 * The first `perClass` test images of each class, from `dataSpec` (`capsnet serve --data`) or else the model's
 * recorded data set. Directory data is recorded by its base name only (`idx:mnist-full`), which names no folder
 * to read: without `dataSpec` the set is empty with a note saying to pass --data.
 */
export async function loadSamples(metadata: ModelMetadata, perClass: number, dataSpec?: string): Promise<SampleSet> {
  const shape: [number, number, number] = [metadata.inputHeight, metadata.inputWidth, metadata.inputChannels];
  const spec = dataSpec || metadata.dataset || 'mnist-sample';
  const dir = /^[a-z0-9]+(?:-[a-z0-9]+)?:(.*)$/i.exec(spec)?.[1];
  if (!dataSpec && dir !== undefined && !/^([/\\]|[A-Za-z]:[/\\])/.test(dir)) {
    return {
      dataset: spec,
      shape,
      samples: [],
      note: `the model records its data as "${spec}", without the directory: pass --data ${spec.split(':')[0]}:DIR to offer its test images`,
    };
  }
  let dataset;
  try {
    const { loadDataset } = await import('../data/datasets.ts');
    dataset = loadDataset(spec);
    // A model trained on crops (section 7) is shown the centre crop of each test image, as it is fed.
    const { config } = metadata;
    if (config.crop && dataset.shape.inputHeight === config.crop.sourceHeight && dataset.shape.inputWidth === config.crop.sourceWidth) {
      const { networkView } = await import('../data/augment.ts');
      dataset = {
        ...dataset,
        shape: { ...dataset.shape, inputHeight: config.inputHeight, inputWidth: config.inputWidth },
        test: networkView(dataset.test, config),
      };
    }
  } catch (e) {
    // The readers name the directory they looked in; no response names a server path, relative or absolute.
    let message = (e as Error).message;
    if (dir && /[/\\]/.test(dir)) message = message.replaceAll(resolve(dir), basename(resolve(dir))).replaceAll(dir, basename(resolve(dir)));
    const name = publicDataName(spec);
    return { dataset: name, shape, samples: [], note: `test images of "${name}" are not available here: ${message}` };
  }
  const { inputHeight, inputWidth, inputChannels } = dataset.shape;
  if (inputHeight !== shape[0] || inputWidth !== shape[1] || inputChannels !== shape[2]) {
    return {
      dataset: spec,
      shape,
      samples: [],
      note: `"${publicDataName(spec)}" images are ${inputHeight}x${inputWidth}x${inputChannels}, not the model's ${shape.join('x')}`,
    };
  }
  const size = inputHeight * inputWidth * inputChannels;
  const taken = new Map<number, number>();
  const samples: Sample[] = [];
  const { test } = dataset;
  for (let i = 0; i < test.count && samples.length < perClass * metadata.numClasses; i++) {
    const label = test.labels[i]!;
    if ((taken.get(label) ?? 0) >= perClass) continue;
    taken.set(label, (taken.get(label) ?? 0) + 1);
    const pixels = Array.from(test.images.subarray(i * size, (i + 1) * size), (v) => Math.round(v * 1000) / 1000);
    samples.push({ index: i, label, labelName: metadata.classLabels[label] ?? String(label), pixels });
  }
  samples.sort((a, b) => a.label - b.label || a.index - b.index);
  return { dataset: spec, shape, samples };
}
