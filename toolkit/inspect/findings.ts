/** What inspection found, in words a user can act on; `code` is stable for programs and tests. */
export interface Finding {
  severity: 'error' | 'warning' | 'info';
  code: string;
  message: string;
}

export const error = (code: string, message: string): Finding => ({ severity: 'error', code, message });
export const warning = (code: string, message: string): Finding => ({ severity: 'warning', code, message });
export const info = (code: string, message: string): Finding => ({ severity: 'info', code, message });

/** "1.5 GiB", "512 MiB", "4 KiB": sizes in messages. */
export function humanSize(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${Number(value.toFixed(1))} ${units[unit]}`;
}
