/**
 * `capsnet serve` refuses what cannot work at startup, in one line naming the problem and the fix: an address it
 * cannot listen on (not this machine's, a privileged port, a name that does not resolve) and a --data value that
 * names no data set or a directory that is not there.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { listenErrorMessage } from '../../../packages/capsnet/src/serve/main.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false, timeout: 120_000 });
const systemError = (code: string, message: string) => Object.assign(new Error(message), { code }) as NodeJS.ErrnoException;
const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('capsnet serve: '));

describe('capsnet serve: listen errors', () => {
  test('each likely system error is one line naming the address and the fix, without the raw system text', () => {
    const notHere = listenErrorMessage(systemError('EADDRNOTAVAIL', 'listen EADDRNOTAVAIL: address not available 10.99.99.99:8094'), '10.99.99.99', 8094);
    assert.match(notHere, /10\.99\.99\.99:8094/);
    assert.match(notHere, /not an address of this machine.*--host.*127\.0\.0\.1.*0\.0\.0\.0/);
    assert.doesNotMatch(notHere, /listen EADDRNOTAVAIL/);
    const low = listenErrorMessage(systemError('EACCES', 'listen EACCES: permission denied 127.0.0.1:80'), '127.0.0.1', 80);
    assert.match(low, /127\.0\.0\.1:80: ports below 1024 need administrator rights: pick a port from 1024 up with --port/);
    const refused = listenErrorMessage(systemError('EACCES', 'listen EACCES: permission denied'), '127.0.0.1', 8080);
    assert.match(refused, /127\.0\.0\.1:8080: the system refuses this port \(EACCES\): pick another with --port/);
    const name = listenErrorMessage(systemError('ENOTFOUND', 'getaddrinfo ENOTFOUND nowhere.invalid'), 'nowhere.invalid', 8080);
    assert.match(name, /host name nowhere\.invalid does not resolve: pass an address with --host/);
    assert.match(listenErrorMessage(systemError('EADDRINUSE', 'x'), '127.0.0.1', 8080), /port 8080 on 127\.0\.0\.1 is in use: pick another with --port/);
    const other = listenErrorMessage(systemError('EWHATEVER', 'listen EWHATEVER: odd\n    at stack'), '127.0.0.1', 8080);
    assert.equal(other, 'cannot listen on 127.0.0.1:8080 (listen EWHATEVER: odd): check --host and --port');
  });

  test('through the CLI, an address of another machine is that line, exit status 1, no stack', async () => {
    const r = await cli('serve', '--pretrained', 'mnist-small', '--host', '10.99.99.99', '--port', '0');
    assert.equal(r.exitCode, 1, r.stderr);
    const errors = lines(`${r.stdout}\n${r.stderr}`);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0]!, /^capsnet: cannot listen on 10\.99\.99\.99:0: 10\.99\.99\.99 is not an address of this machine/);
    assert.doesNotMatch(r.stderr, /EADDRNOTAVAIL|\n\s+at /);
  });
});

describe('capsnet serve --data: refused at startup, as train refuses it', () => {
  test('an unknown data set name', async () => {
    const r = await cli('serve', '--pretrained', 'mnist-small', '--port', '0', '--data', 'bogus');
    assert.equal(r.exitCode, 1, r.stdout);
    assert.match(r.stderr, /^capsnet: unknown data set "bogus": use mnist \| mnist-sample/);
    assert.doesNotMatch(r.stdout, /listening/);
  });

  test('a data directory that does not exist', async () => {
    const r = await cli('serve', '--pretrained', 'mnist-small', '--port', '0', '--data', 'idx:/nope-capsnet-test');
    assert.equal(r.exitCode, 1, r.stdout);
    assert.match(r.stderr, /^capsnet: data directory \/nope-capsnet-test does not exist: pass --data idx:DIR/);
    assert.doesNotMatch(r.stdout, /listening/);
  });
});
