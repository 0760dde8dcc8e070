/**
 * Names (files, classes) for a one-line message: the first `shown` of them, then how many more, so a folder of
 * thousands does not become a line of thousands.
 */
export function shortList(names: readonly (string | number)[], shown: number): string {
  return names.length > shown ? `${names.slice(0, shown).join(', ')} and ${names.length - shown} more` : names.join(', ');
}
