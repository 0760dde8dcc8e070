/**
 * What each dimension of a digit capsule was measured to do: the file `capsnet experiment perturb` writes
 * (dimensions.json), @capsnet-onnx/mnist ships per model, `capsnet serve` serves in GET /v1/model and the page
 * names its sliders with. The measurement itself (image statistics of the decoded reconstructions of the paper's
 * figure 4, section 5.1) is packages/capsnet/src/experiments/dimensions.ts; this is its format and its check.
 */

/** The `format` field of a dimensions file. */
export const DIMENSIONS_FORMAT = 'capsnet-dimensions/1';

/**
 * One dimension's measured effect: the change from the reconstruction with the dimension at -0.25 to the one at
 * +0.25 (the others unchanged), averaged over the measured digits. Lengths are in pixels of the model's input.
 */
export interface DimensionEffect {
  /** 1-based, as the page's sliders and the paper's figure 4 count them. */
  dimension: number;
  /** The dominant effect in the paper's terms, e.g. "stroke thickness", "translation", "scale and thickness". */
  label: string;
  /** Mean |pixel change| between the -0.25 and +0.25 reconstructions (pixels in [0, 1]). */
  change: number;
  /** Share of the summed |pixel change| inside the one window (a quarter of the image's side) holding most of it. */
  locality: number;
  /** Share of the unperturbed digit's ink inside that window: a change is localized when locality exceeds it by 0.25. */
  inkShare: number;
  /** Signed shift of the ink's centroid along x (to the right), pixels. */
  shiftX: number;
  /** Signed shift of the ink's centroid along y (down), pixels. */
  shiftY: number;
  /** Signed change of the ink's standard deviation along x (width), pixels. */
  width: number;
  /** Signed change of the ink's standard deviation along y (height), pixels. */
  height: number;
  /** Signed change of the mean stroke width (2 x ink / edge length), pixels. */
  thickness: number;
  /** Signed change of the slant (mu11 / mu02) times the digit's height sigma: horizontal shear at +1 sigma, pixels. */
  skew: number;
  /** Signed change of the principal axis' angle, degrees (for an upright digit the same moments as skew). */
  rotation: number;
  /** Signed change of the ink (sum of pixel values) as a fraction of the unperturbed digit's ink. */
  ink: number;
}

/** The effects of every dimension for one class (the winning capsule of that class's digits). */
export interface ClassDimensions {
  /** Class index. */
  class: number;
  /** Digits of the class whose reconstructions were measured. */
  digits: number;
  dimensions: DimensionEffect[];
}

/** A dimensions file (dimensions.json): what each capsule dimension of one model does, per class and overall. */
export interface DimensionFindings {
  /** {@link DIMENSIONS_FORMAT}. */
  format: typeof DIMENSIONS_FORMAT;
  /** Capsule dimensions of the model measured (16 in the paper). */
  digitDim: number;
  /** Classes of the model measured (its digit capsules). */
  numClasses: number;
  /** The perturbations added to one dimension at a time: -0.25 ... +0.25 in steps of 0.05 (the paper's figure 4). */
  steps: number[];
  /** The model file measured (its base name). */
  model: string;
  /** The data set whose test digits were measured (e.g. mnist). */
  dataset: string;
  /** Over every measured digit of every class: one entry per dimension, in order. */
  overall: DimensionEffect[];
  /** One entry per class measured. */
  perClass: ClassDimensions[];
}

/**
 * Check a parsed dimensions file and return it typed.
 * @param where names the file in errors (e.g. its path)
 * @param expect the model's digitDim and numClasses, when the file must match a model
 * @throws Error, one line naming the problem and the fix, when it is not a dimensions file or does not match
 */
export function checkDimensionFindings(value: unknown, where: string, expect?: { digitDim: number; numClasses: number }): DimensionFindings {
  const fix = 'write it with `capsnet experiment perturb --model model.onnx --out DIR` (DIR/dimensions.json)';
  const fail = (problem: string): never => {
    throw new Error(`${where}: ${problem}: ${fix}`);
  };
  const v = value as Partial<DimensionFindings> | null;
  if (typeof v !== 'object' || v === null || v.format !== DIMENSIONS_FORMAT) fail(`not a dimensions file (format is not "${DIMENSIONS_FORMAT}")`);
  const f = v as DimensionFindings;
  if (!Number.isInteger(f.digitDim) || !Number.isInteger(f.numClasses)) fail('digitDim or numClasses is missing');
  if (expect && (f.digitDim !== expect.digitDim || f.numClasses !== expect.numClasses)) {
    fail(`measured on capsules of ${f.numClasses} x ${f.digitDim}, the model has ${expect.numClasses} x ${expect.digitDim}`);
  }
  const checkList = (list: unknown, what: string) => {
    if (!Array.isArray(list) || list.length !== f.digitDim) fail(`${what} does not list ${f.digitDim} dimensions`);
    (list as DimensionEffect[]).forEach((e, d) => {
      if (typeof e !== 'object' || e === null || e.dimension !== d + 1 || typeof e.label !== 'string' || e.label.length > 80) {
        fail(`${what}[${d}] is not dimension ${d + 1} with a label of at most 80 characters`);
      }
    });
  };
  checkList(f.overall, 'overall');
  if (!Array.isArray(f.perClass)) fail('perClass is not a list');
  for (const c of f.perClass) {
    if (typeof c !== 'object' || c === null || !Number.isInteger(c.class) || c.class < 0 || c.class >= f.numClasses)
      fail('a perClass entry has no valid class');
    checkList(c.dimensions, `perClass (class ${c.class})`);
  }
  return f;
}

/** The label of dimension `d` (0-based) for class `cls`: the class's, else the overall one, else "dimension d+1". */
export function dimensionLabel(findings: DimensionFindings | null | undefined, cls: number, d: number): string {
  const own = findings?.perClass.find((c) => c.class === cls)?.dimensions[d]?.label;
  return own || findings?.overall[d]?.label || `dimension ${d + 1}`;
}
