// Misuse the package's types must reject: each line below is an error, or tsc reports the unused directive.
import { pretrained } from '@capsnet-onnx/mnist';
import { CapsNet, type LoadOptions } from '@capsnet-onnx/runtime';

// @ts-expect-error a model is a path or bytes, not a number
void CapsNet.load(42);
// @ts-expect-error no such device
export const badDevice: LoadOptions = { device: 'tpu' };
// @ts-expect-error exactOptionalPropertyTypes: an optional property is not `undefined`
export const undefinedBatch: LoadOptions = { maxBatch: undefined };
// @ts-expect-error no such pretrained model: the names are the package's (PretrainedName)
export const noSuchModel = pretrained('mnist-huge');
