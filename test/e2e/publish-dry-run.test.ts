/**
 * Releases (issue 24 item 4): `npm publish --dry-run` of each workspace package as a release would run it (prepack
 * builds it and writes the published manifest), and the changesets configuration that versions the three together.
 *
 * Nothing is published: besides --dry-run, npm is pointed at a registry that does not exist (127.0.0.1, port 9,
 * the discard port, where nothing listens), so even a dry run that was ignored could not reach one. npm's dry run
 * still asks that registry whether the version is out already; --fetch-retries=0 lets the refused connection fail
 * at once (npm's default of two retries with backoff waited about 70 s per package, 4 of this file's 5 minutes).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { ROOT } from '../support/fixtures.ts';
import { WORKSPACES, type Workspace, appEnv } from '../support/packages.ts';

const NOWHERE = 'http://127.0.0.1:9/';
const manifest = (w: string) => join(ROOT, 'packages', w, 'package.json');
const made: string[] = [];
after(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

describe('npm publish --dry-run', () => {
  for (const w of Object.keys(WORKSPACES) as Workspace[]) {
    test(`${WORKSPACES[w]}: compiled JavaScript with types, public, nothing published, its package.json left as it was`, async () => {
      const before = readFileSync(manifest(w), 'utf8');
      const { version } = JSON.parse(before) as { version: string };
      const r = await execa('npm', ['publish', '--dry-run', '--json', '--registry', NOWHERE, '--fetch-retries=0', '-w', `packages/${w}`], {
        cwd: ROOT,
        env: appEnv({ NO_COLOR: '1' }),
        extendEnv: false,
        reject: false,
      });
      assert.equal(r.exitCode, 0, r.stderr);
      // npm's JSON report is the last thing on stdout, after what prepack's build prints (capsnet-onnx's bundles).
      const json = r.stdout.slice(Math.max(0, r.stdout.search(/^\{$/m)));
      const report = (JSON.parse(json) as Record<string, { name: string; version: string; files: { path: string }[] }>)[WORKSPACES[w]];
      assert.ok(report, r.stdout.slice(0, 500));
      assert.equal(report.name, WORKSPACES[w]);
      assert.equal(report.version, version);
      const files = report.files.map((f) => f.path);
      assert.ok(files.includes('README.md') && files.includes('LICENSE') && files.includes('package.json'), files.join(', '));
      assert.ok(
        files.some((f) => /^dist\/.*\.d\.ts$/.test(f)),
        'no .d.ts in the package',
      );
      assert.deepEqual(
        files.filter((f) => f.startsWith('src/') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))),
        [],
        'sources in the package',
      );
      // npm says it is a dry run, to which registry, and with public access (scoped packages need publishConfig).
      assert.match(r.stderr, /Publishing to http:\/\/127\.0\.0\.1:9\/ with tag latest and public access \(dry-run\)/);
      // A manifest npm has to correct at publish time would be published differently from the repository's.
      assert.doesNotMatch(r.stderr, /auto-corrected/);
      assert.equal(readFileSync(manifest(w), 'utf8'), before);
    });
  }
});

describe('changesets', () => {
  test('the three packages are one fixed group: a change to one versions all three, and their pins on each other', async () => {
    const config = JSON.parse(readFileSync(join(ROOT, '.changeset', 'config.json'), 'utf8')) as { fixed: string[][] };
    assert.deepEqual(
      config.fixed.map((g) => [...g].sort()),
      [Object.values(WORKSPACES).sort()],
    );
    // `changeset version` in a copy of the workspace manifests, with one minor change to the runtime only.
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-changeset-'));
    made.push(dir);
    cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    cpSync(join(ROOT, '.changeset', 'config.json'), join(dir, '.changeset', 'config.json'));
    for (const w of Object.keys(WORKSPACES)) {
      mkdirSync(join(dir, 'packages', w), { recursive: true });
      cpSync(manifest(w), join(dir, 'packages', w, 'package.json'));
    }
    writeFileSync(join(dir, '.changeset', 'a-runtime-change.md'), '---\n"@capsnet-onnx/runtime": minor\n---\n\nA runtime change.\n');
    const r = await execa(join(ROOT, 'node_modules', '.bin', 'changeset'), ['version'], {
      cwd: dir,
      env: appEnv(),
      extendEnv: false,
      reject: false,
      all: true,
    });
    assert.equal(r.exitCode, 0, r.all);
    const { version } = JSON.parse(readFileSync(manifest('runtime'), 'utf8')) as { version: string };
    const [major, minor] = version.split('.').map(Number) as [number, number];
    const next = `${major}.${minor + 1}.0`;
    const read = (w: string) =>
      JSON.parse(readFileSync(join(dir, 'packages', w, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
    for (const w of Object.keys(WORKSPACES)) assert.equal(read(w).version, next, `${w} was not versioned with the others`);
    assert.equal(read('runtime').dependencies['@capsnet-onnx/core'], next);
    assert.equal(read('capsnet').dependencies['@capsnet-onnx/runtime'], next);
    assert.match(
      readFileSync(join(dir, 'packages', 'runtime', 'CHANGELOG.md'), 'utf8'),
      new RegExp(`## ${next.replaceAll('.', '\\.')}[\\s\\S]*A runtime change`),
    );
  });
});
