/**
 * Training data that would train without error but not into what the user meant: labels that skip classes
 * (one stray label of 200 makes a 201-class model), a single class (any classifier scores "100%"), or a class
 * with no training example. `capsnet train` stops on these unless `--allow-suspicious-data` is given.
 */
import type { Split } from '../data/datasets.ts';
import { shortList } from '../files/short-list.ts';

/** Why these training labels look wrong (one line, with the fix), or undefined when they look fine. */
export function suspiciousLabels(train: Split, numClasses: number): string | undefined {
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < train.count; i++) {
    const label = train.labels[i]!;
    if (label >= 0 && label < numClasses) counts[label]!++;
  }
  const present = counts.filter((c) => c > 0).length;
  const fix = 'fix the labels, or pass --allow-suspicious-data to train anyway';
  if (present <= 1) {
    const only = counts.findIndex((c) => c > 0);
    return `all ${train.count} training labels are ${only}: a classifier needs examples of at least two classes; ${fix}`;
  }
  const empty = counts.flatMap((c, k) => (c === 0 ? [k] : []));
  if (empty.length) {
    return (
      `${empty.length} of the ${numClasses} classes have no training example (class${empty.length > 1 ? 'es' : ''} ${shortList(empty, 8)}): ` +
      `the classes are 0..${numClasses - 1} because the largest label is ${numClasses - 1}, so the labels skip classes; ${fix}`
    );
  }
  return undefined;
}
