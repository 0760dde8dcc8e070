/**
 * The experiments' vocabularies, in a module with no imports so that the command line can offer them as choices
 * without loading the experiments (TensorFlow.js).
 */

/**
 * ci: minutes on a 2-core CPU; medium: under an hour per experiment on 2 CPU cores, on the official MNIST;
 * paper: the paper's sizes and epochs, for a GPU machine (experiments/common.ts has the sizes).
 */
export const SCALES = ['ci', 'medium', 'paper'] as const;
export type Scale = (typeof SCALES)[number];

/** One line per scale for `--help` and the report: what it trains and which of the paper's effects it can resolve. */
export const SCALE_SUMMARY: Record<Scale, string> = {
  ci:
    'minutes on 2 CPU cores: narrow nets (conv1 32, 8 primary maps), a few thousand digits, 1,000 test ' +
    "digits; shows that each protocol runs and the effects qualitatively, resolves none of the paper's " +
    'differences',
  medium:
    'under an hour per experiment on 2 CPU cores: the small preset (conv1 64, 8 primary maps) on 30,000 ' +
    'official training digits and all 10,000 test digits, about one epoch; ' +
    'its 95% test-set interval (about +-0.3 points at 2% error) resolves differences of about 0.4 ' +
    'points and more (CapsNet vs a small CNN, MultiMNIST and affine gaps of several points), ' +
    "not Table 1's 0.04-0.14-point gaps (these need paper scale and several seeds)",
  paper:
    "the paper's sizes and epochs on the full official MNIST (60,000 / 10,000), for a GPU machine " +
    "(hours to days on a CPU); even there one run's 95% interval on 10,000 test digits is about +-0.1 " +
    "points at 0.3% error, so Table 1's gaps show only in means over seeds",
};

/** The experiments `capsnet experiment all` runs and `experiment report` collects, in report order. */
export const EXPERIMENTS = ['perturb', 'affine', 'multimnist', 'routing', 'mnist-table'] as const;
export type ExperimentName = (typeof EXPERIMENTS)[number];

/** How MultiMNIST's two digits combine (experiments/generators.ts): add = sum clipped to 1, max = pixel-wise max. */
export const OVERLAYS = ['add', 'max'] as const;
export type Overlay = (typeof OVERLAYS)[number];
