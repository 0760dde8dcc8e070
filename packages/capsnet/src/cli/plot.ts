/** `capsnet plot`: a training run's curves as an SVG figure (experiments/curves.ts). */
import type { Command } from 'commander';

export function registerPlotCommands(program: Command): void {
  program
    .command('plot')
    .description("draw a training run's curves (loss parts and test accuracy per epoch, from RUN_DIR/metrics.jsonl) as an SVG figure")
    .argument('<run-dir>', 'run directory written by `capsnet train --out`')
    .option('-o, --out <file.svg>', 'SVG file to write (default: RUN_DIR/curves.svg)')
    .option('--overwrite', 'replace the SVG file if it exists (without it, an existing one is an error)', false)
    .action(async (runDir: string, opts: { out?: string; overwrite: boolean }) => {
      const { plotRun } = await import('../experiments/curves.ts');
      const result = await plotRun(runDir, opts);
      console.log(`${result.path}: ${result.epochs} epoch(s), ${result.lossSeries} loss curve(s) and test accuracy, ${result.width}x${result.height} px SVG`);
    });
}
