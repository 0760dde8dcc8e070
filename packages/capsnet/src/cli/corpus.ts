/** `capsnet corpus`: the test corpus of digits in the styles people hand them over (data/corpus.ts). */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { shortList } from '../files/short-list.ts';
import { positiveInt, seed } from './args.ts';

export function registerCorpusCommands(program: Command): void {
  const corpus = program.command('corpus').description('test digits drawn as people hand them over: write the corpus, score classify results on it');
  corpus
    .command('write')
    .description(
      'write N embedded test digits in every style (mnist, paper, canvas, corner, photo) and blanks to DIR/<style>/<n>-<label>.<png|jpg>, ' +
        'and what it wrote to DIR/corpus.json',
    )
    .argument('<dir>', 'output folder: created, or a corpus this command wrote (replaced); anything else needs --overwrite')
    .option('--count <n>', 'digits per style (blanks: a quarter as many per blank style)', positiveInt('--count'), 200)
    .option('--seed <n>', 'seed for placement, sizes, light and noise', seed('--seed'), 1)
    .option('--overwrite', 'replace the corpus files in a folder holding other or edited files (files not named like corpus files stay)', false)
    .action(async (dir: string, opts: { count: number; seed: number; overwrite: boolean }) => {
      const { DIGIT_STYLES, BLANK_STYLES } = await import('../data/corpus.ts');
      const { writeCorpus } = await import('../data/corpus-files.ts');
      const result = writeCorpus(dir, opts);
      const replaced = result.removed ? ` (the ${result.removed} files of the previous corpus removed first)` : '';
      // Files the corpus did not write stay, and classify DIR will read any images among them: say which.
      const kept = result.kept.length ? `; kept ${result.kept.length} other file(s): ${shortList(result.kept, 5)}` : '';
      console.log(`${dir}: ${result.written} images in ${DIGIT_STYLES.length + BLANK_STYLES.length} styles${replaced}${kept}`);
    });
  corpus
    .command('score')
    .description('accuracy by style of `capsnet classify MODEL DIR --json` output on a corpus (a blank is right when its label is null)')
    .argument('[file]', 'the JSON output (default: standard input)')
    .action(async (file: string | undefined) => {
      const { scoreByStyle } = await import('../data/corpus.ts');
      let input: { results?: Array<{ image: string; label: number | null }>; error?: { message: string } };
      let text: string;
      try {
        text = readFileSync(file ?? 0, 'utf8');
      } catch (e) {
        const { systemErrorLine } = await import('../files/atomic.ts');
        throw new Error(systemErrorLine(e, file ?? 'standard input') ?? `cannot read ${file ?? 'standard input'}: ${(e as Error).message}`, { cause: e });
      }
      try {
        input = JSON.parse(text);
      } catch (e) {
        throw new Error(`${file ?? 'standard input'} is not JSON (${(e as Error).message}): pipe in \`capsnet classify MODEL DIR --json\``);
      }
      if (!Array.isArray(input.results)) throw new Error(`no results to score: ${input.error?.message ?? 'pipe in `capsnet classify MODEL DIR --json`'}`);
      console.log('| style | accuracy | images |\n|---|---|---|');
      for (const [style, { right, total }] of scoreByStyle(input.results)) console.log(`| ${style} | ${((100 * right) / total).toFixed(1)}% | ${total} |`);
    });
}
