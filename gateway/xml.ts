/**
 * EC2 Query responses. Values are plain JS: arrays become <item> lists, booleans lowercase,
 * Dates ISO 8601, undefined/null elements are left out. Text is escaped by the builder.
 */
import { XMLBuilder } from 'fast-xml-parser';
import type { Ec2Error } from './errors';

export const EC2_XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const PROLOG = '<?xml version="1.0" encoding="UTF-8"?>';

export type XmlValue = string | number | boolean | Date | undefined | null | XmlValue[] | { [element: string]: XmlValue };
export type XmlObject = { [element: string]: XmlValue };

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: false, format: false });

/** `<{action}Response xmlns=…><requestId>…</requestId>…body…</{action}Response>` */
export function renderResponse(action: string, requestId: string, body: XmlObject = {}): string {
  const content = toBuilderTree({ requestId, ...body }) as Record<string, unknown>;
  return PROLOG + builder.build({ [`${action}Response`]: { '@_xmlns': EC2_XMLNS, ...content } });
}

export function renderError(error: Ec2Error, requestId: string): string {
  return (
    PROLOG +
    builder.build({
      Response: {
        Errors: { Error: { Code: xmlText(error.code), Message: xmlText(error.message) } },
        RequestID: requestId,
      },
    })
  );
}

function toBuilderTree(value: XmlValue): unknown {
  if (Array.isArray(value)) return { item: value.filter((v) => v !== undefined && v !== null).map(toBuilderTree) };
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined;
  if (typeof value === 'string') return xmlText(value);
  if (value === undefined || value === null) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(value)) {
    const converted = toBuilderTree(child);
    if (converted !== undefined) out[name] = converted;
  }
  return out;
}

/** Characters XML 1.0 cannot carry at all (escaping does not help) become U+FFFD. */
function xmlText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}
