/**
 * EC2 Query responses. Values are plain JS: arrays become <item> lists, booleans lowercase,
 * Dates ISO 8601, undefined/null elements are left out. Text is escaped here.
 *
 * The document is written straight into one string: every describe answer passes through here,
 * and a general-purpose builder (fast-xml-parser's, which this replaced with the same output:
 * test/unit/gateway/xml.test.ts holds the two side by side) spent more per request than the
 * store's query did.
 */
import type { Ec2Error } from './errors';

export const EC2_XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const PROLOG = '<?xml version="1.0" encoding="UTF-8"?>';

export type XmlValue = string | number | boolean | Date | undefined | null | XmlValue[] | { [element: string]: XmlValue };
export type XmlObject = { [element: string]: XmlValue };

/** `<{action}Response xmlns=…><requestId>…</requestId>…body…</{action}Response>` */
export function renderResponse(action: string, requestId: string, body: XmlObject = {}): string {
  const name = `${action}Response`;
  return `${PROLOG}<${name} xmlns="${EC2_XMLNS}">${children({ requestId, ...body })}</${name}>`;
}

export function renderError(error: Ec2Error, requestId: string): string {
  return (
    `${PROLOG}<Response><Errors><Error><Code>${escapeText(error.code)}</Code><Message>${escapeText(error.message)}</Message></Error></Errors>` +
    `<RequestID>${escapeText(requestId)}</RequestID></Response>`
  );
}

function children(object: { [element: string]: XmlValue }): string {
  let out = '';
  for (const name in object) {
    if (Object.prototype.hasOwnProperty.call(object, name)) out += element(name, object[name]);
  }
  return out;
}

/** One element, or '' when the value is left out (undefined, null, a number that is not finite). */
function element(name: string, value: XmlValue): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return `<${name}>${escapeText(value)}</${name}>`;
  if (typeof value === 'number') return Number.isFinite(value) ? `<${name}>${String(value)}</${name}>` : '';
  if (typeof value === 'boolean') return `<${name}>${value ? 'true' : 'false'}</${name}>`;
  if (value instanceof Date) return `<${name}>${value.toISOString()}</${name}>`;
  if (Array.isArray(value)) {
    let items = '';
    for (const item of value) items += element('item', item);
    return `<${name}>${items}</${name}>`;
  }
  return `<${name}>${children(value)}</${name}>`;
}

// eslint-disable-next-line no-control-regex
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
// eslint-disable-next-line no-control-regex
const MAYBE_NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/;
const SPECIAL = /[&<>'"]/g;
const HAS_SPECIAL = /[&<>'"]/;
const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', "'": '&apos;', '"': '&quot;' };

/**
 * Text as element content: characters XML 1.0 cannot carry at all (escaping does not help)
 * become U+FFFD, then & < > ' " are written as entities.
 */
function escapeText(text: string): string {
  const carried = MAYBE_NOT_XML.test(text) ? text.replace(NOT_XML, '\uFFFD') : text;
  return HAS_SPECIAL.test(carried) ? carried.replace(SPECIAL, (c) => ENTITY[c]) : carried;
}
