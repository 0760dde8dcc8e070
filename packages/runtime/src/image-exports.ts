/**
 * The core's image pipeline, re-exported by every entry (Node and browser): for apps that decode files, read what a
 * page holds (`RgbaImage.read`), or want to see what the model sees (`prepareImage`).
 */
export {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  decodeImage,
  imageFormat,
  loadJpegDecoder,
  readImageHeader,
  RgbaImage,
  type BlobLike,
  type Drawable,
  type ImageLimits,
  type ImageSource,
  POLARITIES,
  PreprocessError,
  prepareImage,
  type Polarity,
  type PreparedImage,
  type Preprocessing,
  type Raster,
} from '@capsnet-onnx/core';
