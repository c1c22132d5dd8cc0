/**
 * Which callback targets are allowed (IRONCLAD_CALLBACK_ALLOW): host names (exact, or
 * `*.example.com`), IP addresses and CIDRs. A host name that is not listed is resolved and
 * every address must fall in a listed CIDR. Loopback is allowed only when listed, or in open
 * (single-user, loopback-bound) dev mode. Checked when the command arrives and again at delivery.
 */
import { BlockList, isIP } from 'node:net';
import { lookup } from 'node:dns/promises';

export interface CallbackAllowList {
  /** null when `url` may be called, else the reason it may not. */
  check(url: string): Promise<string | null>;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

export function createCallbackAllowList(spec: string | undefined, opts: { allowLoopback: boolean; resolve?: (host: string) => Promise<string[]> }): CallbackAllowList {
  const names: string[] = [];
  const wildcards: string[] = [];
  const nets = new BlockList();
  let hasNets = false;
  for (const raw of (spec ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    const [addr, bits] = raw.split('/');
    const family = isIP(addr!);
    if (family) {
      hasNets = true;
      if (bits === undefined) nets.addAddress(addr!, family === 6 ? 'ipv6' : 'ipv4');
      else nets.addSubnet(addr!, Number(bits), family === 6 ? 'ipv6' : 'ipv4');
    } else if (raw.startsWith('*.')) wildcards.push(raw.slice(1));
    else names.push(raw);
  }
  const resolve = opts.resolve ?? (async (host: string) => (await lookup(host, { all: true })).map((a) => a.address));
  const ipAllowed = (ip: string): boolean => {
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (hasNets && nets.check(ip, type)) return true;
    return opts.allowLoopback && LOOPBACK.check(ip, type);
  };

  return {
    async check(url) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        return 'not a valid URL';
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'only http and https callbacks are allowed';
      if (u.username || u.password) return 'credentials in the URL are not allowed';
      const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
      if (isIP(host)) return ipAllowed(host) ? null : `${host} is not allowed by IRONCLAD_CALLBACK_ALLOW`;
      if (names.includes(host) || wildcards.some((w) => host.endsWith(w))) return null;
      if (host === 'localhost' && opts.allowLoopback) return null;
      let addrs: string[];
      try {
        addrs = await resolve(host);
      } catch {
        return `${host} does not resolve`;
      }
      if (addrs.length > 0 && addrs.every(ipAllowed)) return null;
      return `${host} is not allowed by IRONCLAD_CALLBACK_ALLOW`;
    },
  };
}
