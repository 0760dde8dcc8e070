/**
 * The experiments' vocabularies, in a module with no imports so that the command line can offer them as choices
 * without loading the experiments (TensorFlow.js).
 */

/** ci: minutes on a 2-core CPU; paper: the paper's sizes and epochs (experiments/common.ts). */
export const SCALES = ['ci', 'paper'] as const;
export type Scale = (typeof SCALES)[number];

/** The experiments `capsnet experiment all` runs and `experiment report` collects, in report order. */
export const EXPERIMENTS = ['perturb', 'affine', 'multimnist', 'routing', 'mnist-table'] as const;
export type ExperimentName = (typeof EXPERIMENTS)[number];

/** How MultiMNIST's two digits combine (experiments/generators.ts): add = sum clipped to 1, max = pixel-wise max. */
export const OVERLAYS = ['add', 'max'] as const;
export type Overlay = (typeof OVERLAYS)[number];
