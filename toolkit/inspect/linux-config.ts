/** Parsers of the few Linux configuration files inspection reads; pure functions over text. */

export interface OsRelease {
  ID?: string;
  NAME?: string;
  VERSION_ID?: string;
  PRETTY_NAME?: string;
  ID_LIKE?: string;
  [key: string]: string | undefined;
}

/** os-release(5): KEY=value lines, values optionally quoted with shell-style escapes. */
export function parseOsRelease(text: string): OsRelease {
  const out: OsRelease = {};
  for (const line of text.split('\n')) {
    const match = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2].trim();
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\(["\\$`])/g, '$1');
    }
    out[match[1]] = value;
  }
  return out;
}

export interface FstabEntry {
  spec: string;
  mountpoint: string;
  type: string;
  options: string[];
  line: number;
}

/** fstab(5): whitespace-separated fields; '#' comments; octal escapes (\040) in paths. */
export function parseFstab(text: string): FstabEntry[] {
  const entries: FstabEntry[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const fields = line.split(/\s+/).map((field) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
    if (fields.length < 2) return;
    entries.push({ spec: fields[0], mountpoint: fields[1], type: fields[2] ?? 'auto', options: (fields[3] ?? 'defaults').split(','), line: index + 1 });
  });
  return entries;
}

/** `UUID=x`, `LABEL=x`, `/dev/disk/by-uuid/x`, `/dev/disk/by-label/x`, or a device path. */
export function fstabSource(spec: string): { by: 'uuid' | 'label' | 'partuuid' | 'partlabel' | 'device' | 'other'; value: string } {
  const tag = /^(UUID|LABEL|PARTUUID|PARTLABEL)=(.*)$/i.exec(spec);
  if (tag) return { by: tag[1].toLowerCase() as 'uuid', value: tag[2].replace(/^"(.*)"$/, '$1') };
  const byPath = /^\/dev\/disk\/by-(uuid|label|partuuid|partlabel)\/(.+)$/.exec(spec);
  if (byPath) return { by: byPath[1] as 'uuid', value: byPath[2].replace(/\\x2f/g, '/') };
  if (spec.startsWith('/dev/')) return { by: 'device', value: spec };
  return { by: 'other', value: spec };
}

export interface GrubConfig {
  entries: string[];
  /** Kernel paths on `linux`/`linux16`/`linuxefi` lines, as written. */
  kernels: string[];
  /** `root=` arguments on those lines. */
  roots: string[];
}

export function parseGrubConfig(text: string): GrubConfig {
  const entries: string[] = [];
  const kernels: string[] = [];
  const roots: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const entry = /^menuentry\s+(?:'([^']*)'|"([^"]*)"|(\S+))/.exec(line);
    if (entry) entries.push(entry[1] ?? entry[2] ?? entry[3]);
    const linux = /^(?:linux|linux16|linuxefi)\s+(\S+)(.*)$/.exec(line);
    if (linux) {
      kernels.push(linux[1]);
      const root = /(?:^|\s)root=(\S+)/.exec(linux[2]);
      if (root) roots.push(root[1]);
    }
  }
  return { entries, kernels, roots };
}

/** BootLoaderSpec-style and extlinux/syslinux configs: `LINUX`/`KERNEL` and `APPEND root=` lines. */
export function parseExtlinuxConfig(text: string): GrubConfig {
  const entries: string[] = [];
  const kernels: string[] = [];
  const roots: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const label = /^label\s+(.+)$/i.exec(line);
    if (label) entries.push(label[1]);
    const kernel = /^(?:linux|kernel)\s+(\S+)/i.exec(line);
    if (kernel) kernels.push(kernel[1]);
    const root = /^append\s.*?(?:^|\s)root=(\S+)/i.exec(line);
    if (root) roots.push(root[1]);
  }
  return { entries, kernels, roots };
}
