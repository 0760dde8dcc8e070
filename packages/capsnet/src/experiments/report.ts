/** `capsnet experiment report DIR`: the experiments' JSON tables and SVG figures in DIR, as DIR/REPORT.md. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic.ts';
import { EXPERIMENTS, type ExperimentResult, SCALE_SUMMARY, resultPath } from './common.ts';

function cell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  return String(value).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function table(columns: string[], rows: unknown[][]): string {
  return [
    `| ${columns.map(cell).join(' | ')} |`,
    `| ${columns.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${columns.map((_, i) => cell(r[i])).join(' | ')} |`),
  ].join('\n');
}

function formatMetric(key: string, value: number): string {
  if (/accuracy|capsnet_|cnn_/.test(key) && value >= 0 && value <= 1) return `${(100 * value).toFixed(2)}%`;
  if (key.endsWith('seconds')) return value.toFixed(1);
  if (Math.abs(value) < 1e-3 && value !== 0) return value.toExponential(2);
  return Number.isInteger(value) ? String(value) : value.toFixed(4);
}

export function readResults(dir: string): ExperimentResult[] {
  const results: ExperimentResult[] = [];
  for (const name of EXPERIMENTS) {
    const path = resultPath(dir, name);
    if (!existsSync(path)) continue;
    let parsed: ExperimentResult;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8')) as ExperimentResult;
    } catch (e) {
      throw new Error(`${path} is not valid JSON (${(e as Error).message}): re-run \`capsnet experiment ${name}\``);
    }
    if (parsed.experiment !== name || !Array.isArray(parsed.tables) || !Array.isArray(parsed.figures)) {
      throw new Error(`${path} is not a capsnet experiment result: re-run \`capsnet experiment ${name}\``);
    }
    results.push(parsed);
  }
  return results;
}

export function renderReport(dir: string, results: ExperimentResult[]): string {
  const lines: string[] = ['# CapsNet paper experiments', ''];
  lines.push('Reproductions of the experiments of Sabour, Frosst & Hinton (2017), "Dynamic Routing Between Capsules".', '');
  lines.push(
    table(
      ['experiment', 'scale', 'data', 'backend', 'seconds', 'headline'],
      results.map((r) => [
        `[${r.experiment}](#${r.experiment})`,
        r.scale,
        r.data,
        r.backend,
        r.seconds.toFixed(0),
        Object.entries(r.metrics)
          .slice(0, 4)
          .map(([k, v]) => `${k} ${formatMetric(k, v)}`)
          .join(', '),
      ]),
    ),
    '',
  );
  if (results.some((r) => r.scale === 'ci')) {
    lines.push(
      "> `ci` scale: small networks trained for minutes on a CPU, so the numbers show the effects qualitatively, not the paper's values. " +
        '`--scale medium` resolves gaps of about 0.4 points in under an hour per experiment on 2 CPU cores; ' +
        "`--scale paper` runs the paper's settings on a GPU machine.",
      '',
    );
  }
  if (results.some((r) => r.scale === 'medium')) lines.push(`> \`medium\` scale: ${SCALE_SUMMARY.medium}.`, '');
  for (const r of results) {
    lines.push(`<a id="${r.experiment}"></a>`, `## ${r.title}`, '');
    lines.push(`- command: \`${r.command}\``);
    lines.push(`- scale ${r.scale}, seed ${r.seed}, data ${r.data}, backend ${r.backend}, ${r.seconds.toFixed(0)} s, started ${r.startedAt}`);
    lines.push(`- paper: ${r.paper}`, '');
    if (Object.keys(r.metrics).length) {
      lines.push(
        table(
          ['metric', 'value'],
          Object.entries(r.metrics).map(([k, v]) => [k, formatMetric(k, v)]),
        ),
        '',
      );
    }
    for (const t of r.tables) lines.push(`**${t.title}**`, '', table(t.columns, t.rows), '');
    for (const f of r.figures) {
      const missing = existsSync(join(dir, f.file)) ? '' : ' (file missing)';
      lines.push(`![${f.caption}](${encodeURI(f.file)})`, '', `*${f.caption}*${missing}`, '');
    }
    if (r.notes.length) lines.push(...r.notes.map((n) => `- ${n}`), '');
    const settings = JSON.stringify(r.settings);
    lines.push(
      '<details><summary>settings</summary>',
      '',
      '```json',
      settings.length > 4000 ? `${settings.slice(0, 4000)} ...` : JSON.stringify(r.settings, null, 2),
      '```',
      '',
      '</details>',
      '',
    );
  }
  return lines.join('\n');
}

/** Write DIR/REPORT.md from the experiment results found in DIR; returns its path. */
export function writeReport(dir: string): string {
  if (!existsSync(dir)) throw new Error(`${dir} does not exist: run \`capsnet experiment NAME --out ${dir}\` first`);
  const results = readResults(dir);
  if (results.length === 0) {
    throw new Error(`no experiment results (${EXPERIMENTS.map((e) => `${e}.json`).join(', ')}) in ${dir}: run \`capsnet experiment NAME --out ${dir}\` first`);
  }
  const path = join(dir, 'REPORT.md');
  // REPORT.md is the report's own output (rewritten from the results each time); atomic, so no half-written report.
  writeFileAtomic(path, renderReport(dir, results));
  return path;
}
