/**
 * Secrets in driver_info (and command parameters) are sealed before they enter an event, shown
 * redacted everywhere, and opened only for drivers. AES-256-GCM detects any tampering.
 */
import { describe, expect, it } from 'vitest';
import { createSecretBox, loadSecretKey } from '../../src/adapters/crypto/secret-box.js';
import { decideNode } from '../../src/domain/node/decide.js';
import { isSecretKey, openSecrets, REDACTED, redactDeep, redactSecrets, sealSecrets } from '../../src/domain/secrets.js';
import { cmd, decideContext, foldNode, history } from '../support/given.js';

const box = createSecretBox(Buffer.alloc(32, 7));
const otherBox = createSecretBox(Buffer.alloc(32, 8));
const CLEAR = 'hunter2-very-secret';

/** Flips one character of the sealed text's body (after the version prefix). */
function tamper(sealed: string, at: number): string {
  const i = 3 + at;
  const c = sealed[i] === 'A' ? 'B' : 'A';
  return sealed.slice(0, i) + c + sealed.slice(i + 1);
}

describe('secret box', () => {
  it.each(['', 'p@ss', CLEAR, 'ünïcødé 🔑', 'x'.repeat(10_000)])('opens what it sealed (%#)', (plain) => {
    expect(box.open(box.seal(plain))).toBe(plain);
  });

  it('seals the same text differently each time, and never in clear', () => {
    const a = box.seal(CLEAR);
    const b = box.seal(CLEAR);
    expect(a).not.toBe(b);
    expect(a.startsWith('v1:')).toBe(true);
    expect(a).not.toContain(CLEAR);
    expect(Buffer.from(a.slice(3), 'base64url').toString('latin1')).not.toContain(CLEAR);
  });

  it.each([
    ['the nonce', 0], ['the tag', 20], ['the ciphertext', 40],
  ])('detects tampering with %s', (_what, at) => {
    const sealed = box.seal(CLEAR);
    expect(() => box.open(tamper(sealed, at))).toThrow();
  });

  it('refuses a value sealed with another key, a truncated value and a value without its prefix', () => {
    const sealed = box.seal(CLEAR);
    expect(() => otherBox.open(sealed)).toThrow();
    expect(() => box.open(sealed.slice(0, -4))).toThrow();
    expect(() => box.open(sealed.slice(3))).toThrow('not a sealed value');
  });

  it('requires a 32-byte key', () => {
    expect(() => createSecretBox(Buffer.alloc(16))).toThrow(/32 bytes/);
    expect(loadSecretKey('ab'.repeat(32), '/nonexistent/never-read')).toEqual(Buffer.alloc(32, 0xab));
  });
});

describe('which keys are secret', () => {
  it.each(['password', 'ipmi_password', 'PASSWORD', 'client_secret', 'SecretKey', 'token', 'api_token', 'x-Token-y'])('%s is secret', (k) => {
    expect(isSecretKey(k)).toBe(true);
  });

  it.each(['ipmi_username', 'ipmi_address', 'name', 'pass', 'key', 'fake_deploy'])('%s is not', (k) => {
    expect(isSecretKey(k)).toBe(false);
  });
});

describe('sealing, redacting and opening driver_info', () => {
  const info = {
    ipmi_address: '10.0.0.5', ipmi_username: 'admin', ipmi_password: CLEAR, api_token: 12345,
    bmc: { client_secret: 'nested-s3cret', port: 623 }, steps: [{ args: { token: 'tok-in-array' } }], empty_password: null,
  };

  it('seals every secret value, nested ones included, and leaves the rest as it was', () => {
    const sealed = sealSecrets(info, box);
    const text = JSON.stringify(sealed);
    for (const clear of [CLEAR, 'nested-s3cret', 'tok-in-array', '12345']) expect(text).not.toContain(clear);
    expect(sealed).toMatchObject({ ipmi_address: '10.0.0.5', ipmi_username: 'admin', bmc: { port: 623 }, empty_password: null });
    expect(sealed['ipmi_password']).toEqual({ $sealed: expect.stringMatching(/^v1:/), $digest: expect.any(String) });
  });

  it('does not seal an already sealed value twice', () => {
    const once = sealSecrets(info, box);
    expect(sealSecrets(once, box)).toEqual(once);
  });

  it('opens sealed values for drivers, at any depth', () => {
    const opened = openSecrets(sealSecrets(info, box), box);
    expect(opened).toMatchObject({
      ipmi_password: CLEAR, api_token: '12345', bmc: { client_secret: 'nested-s3cret', port: 623 }, steps: [{ args: { token: 'tok-in-array' } }],
    });
  });

  it('redactSecrets hides every secret-named key and every sealed value, at any depth', () => {
    const shown = redactSecrets({ ...sealSecrets(info, box), note: { $sealed: box.seal('x') } });
    expect(shown).toEqual({
      ipmi_address: '10.0.0.5', ipmi_username: 'admin', ipmi_password: REDACTED, api_token: REDACTED,
      bmc: { client_secret: REDACTED, port: 623 }, steps: [{ args: { token: REDACTED } }], empty_password: REDACTED, note: REDACTED,
    });
  });

  it('redactSecrets hides secret-named keys even when they were never sealed', () => {
    expect(redactSecrets({ password: CLEAR, deep: { secret: CLEAR }, user: 'u' })).toEqual({ password: REDACTED, deep: { secret: REDACTED }, user: 'u' });
  });

  it('redactDeep hides sealed values and secret-named values anywhere in an event payload', () => {
    const payload = {
      changes: { driver_info: sealSecrets(info, box) }, list: [{ password: CLEAR }, { $sealed: 'v1:abc' }], auth_token: 'clear-tok-value', name: 'kept',
    };
    const shown = redactDeep(payload);
    const text = JSON.stringify(shown);
    for (const clear of [CLEAR, 'clear-tok-value', 'v1:']) expect(text).not.toContain(clear);
    expect(shown).toMatchObject({ name: 'kept', auth_token: REDACTED, list: [{ password: REDACTED }, REDACTED], changes: { driver_info: { ipmi_address: '10.0.0.5' } } });
  });
});

describe('secrets in node events', () => {
  it('never records the clear secret: enroll and update carry only sealed values', () => {
    const driver_info = sealSecrets({ ipmi_address: '10.0.0.5', ipmi_username: 'admin', ipmi_password: CLEAR }, box);
    const enrolled = decideNode(cmd.enroll({ driver: 'ipmi', driver_info }), foldNode([]), decideContext());
    expect(JSON.stringify(enrolled.events)).not.toContain(CLEAR);
    expect(openSecrets(enrolled.state.driver_info, box)['ipmi_password']).toBe(CLEAR);

    const changes = { driver_info: sealSecrets({ ipmi_password: 'rotated-' + CLEAR }, box) };
    const updated = decideNode(cmd.update(changes), foldNode(history.available()), decideContext());
    expect(JSON.stringify(updated.events)).not.toContain('rotated-');
    expect(redactSecrets(updated.state.driver_info)).toEqual({ ipmi_password: REDACTED });
  });

  it('never records a clear secret passed in command parameters once sealed', () => {
    const params = sealSecrets({ deploy_steps: [{ step: 'write_image', args: { image_token: CLEAR } }] }, box);
    const d = decideNode(cmd.provision('deploy', { params }), foldNode(history.available()), decideContext());
    expect(JSON.stringify(d.events)).not.toContain(CLEAR);
    expect(JSON.stringify(redactDeep(d.events))).not.toContain('v1:');
  });
});
