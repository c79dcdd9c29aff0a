import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { conversionTaskXml } from '../../../gateway/actions/conversion-task-xml';
import { Ec2Error } from '../../../gateway/errors';
import { EC2_XMLNS, renderError, renderResponse, type XmlObject, type XmlValue } from '../../../gateway/xml';
import type { TaskDocument } from '../../../tasks/task';
import { seededBytes } from '../../helpers/disk-corpus';

test('a response: namespace, requestId first, lists as <item>, booleans lowercase, absent values left out', () => {
  const xml = renderResponse('DescribeThings', 'req-1', {
    things: [{ id: 'a', ok: true, size: 5 }, { id: 'b', ok: false, note: undefined, other: null }],
    empty: [],
    when: new Date('2026-01-02T03:04:05.000Z'),
  });
  expect(xml).toBe(
    `<?xml version="1.0" encoding="UTF-8"?><DescribeThingsResponse xmlns="${EC2_XMLNS}"><requestId>req-1</requestId>` +
      '<things><item><id>a</id><ok>true</ok><size>5</size></item><item><id>b</id><ok>false</ok></item></things>' +
      '<empty></empty><when>2026-01-02T03:04:05.000Z</when></DescribeThingsResponse>',
  );
});

test('text is escaped, and characters XML cannot carry are replaced', () => {
  const xml = renderResponse('X', 'r', { description: `<a href="x">&'</a>\u0001\uD800` });
  expect(xml).toContain('<description>&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;\uFFFD\uFFFD</description>');
  expect(new XMLParser().parse(xml).XResponse.description).toBe(`<a href="x">&'</a>\uFFFD\uFFFD`);
});

test('the error document', () => {
  expect(renderError(new Ec2Error('InvalidParameterValue', 'Value (<x>) & so on'), 'req-2')).toBe(
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InvalidParameterValue</Code>' +
      '<Message>Value (&lt;x&gt;) &amp; so on</Message></Error></Errors><RequestID>req-2</RequestID></Response>',
  );
});

/**
 * The renderer writes the document itself; fast-xml-parser's builder, which it replaced, is kept
 * here as the reference: the same trees (values of every kind, text with every character class
 * that needs care, nesting, empty lists and objects) must give the same bytes.
 */
describe('the same bytes as fast-xml-parser\'s builder', () => {
  const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: false, format: false });
  const reference = (action: string, requestId: string, body: XmlObject) =>
    `<?xml version="1.0" encoding="UTF-8"?>${builder.build({ [`${action}Response`]: { '@_xmlns': EC2_XMLNS, ...(builderTree({ requestId, ...body }) as object) } })}`;

  test('for 400 generated response bodies', () => {
    const random = seededBytes(400 * 4096, 29);
    let at = 0;
    const next = (n: number) => random[at++ % random.length] % n;
    const texts = ['', 'plain', 'a & b', '<x y="1">\'q\'</x>', 'tab\tnl\ncr\r', '\u0001\u001F', 'lone \uD800 high', 'lone \uDC00 low', 'pair \uD83D\uDE00', '\uFFFE\uFFFF', 'é ü 漢', ']]>'];
    const value = (depth: number): XmlValue => {
      switch (next(depth > 3 ? 6 : 9)) {
        case 0: return undefined;
        case 1: return null;
        case 2: return texts[next(texts.length)];
        case 3: return [0, -1, 1.5, 8589934592, Number.NaN, Number.POSITIVE_INFINITY, 1e21][next(7)];
        case 4: return next(2) === 0;
        case 5: return new Date(Date.UTC(2026, next(12), 1 + next(28), next(24), next(60), next(60), next(1000)));
        case 6: case 7: return Array.from({ length: next(4) }, () => value(depth + 1));
        default: return object(depth + 1);
      }
    };
    const object = (depth: number): XmlObject => Object.fromEntries(Array.from({ length: next(5) }, (_, i) => [`e${i}${'xyz'[next(3)]}`, value(depth)]));
    for (let i = 0; i < 400; i++) {
      const body = object(0);
      expect(renderResponse('DescribeThings', `req-${i}`, body)).toBe(reference('DescribeThings', `req-${i}`, body));
    }
  });

  test('for a conversion task of each kind', () => {
    for (const task of [conversionTask('import-volume'), conversionTask('import-instance')]) {
      const body = { conversionTasks: [conversionTaskXml(task)] };
      expect(renderResponse('DescribeConversionTasks', 'req', body)).toBe(reference('DescribeConversionTasks', 'req', body));
    }
  });
});

function conversionTask(kind: 'import-volume' | 'import-instance'): TaskDocument {
  const at = '2026-12-06T19:00:00.000Z';
  return {
    id: kind === 'import-volume' ? 'import-vol-0000abcd' : 'import-i-0000abcd', kind, accountId: '111122223333', state: 'bundle-decrypted', statusMessage: 'Converting <disk> & "more"', progress: 40, bytesConverted: 1 << 30,
    request: {
      format: 'VMDK', bytes: 734003200, manifestUrl: 'http://objects.example:9000/uploads/x/manifest.xml?X-Amz-Signature=00&X-Amz-Date=1', volumeSizeGiB: 8, availabilityZone: 'us-east-1a', description: "Bob's disk",
      ...(kind === 'import-instance' ? { instance: { instanceId: 'i-0123456789abcdef0', architecture: 'x86_64' as const, platform: 'Windows' as const } } : {}),
    },
    artifacts: { image: { bucket: 'imaging-images', key: 'images/x/disk.raw', size: 1 << 30, sha256: 'ab'.repeat(32) }, volumeId: 'vol-0123456789abcdef0' },
    history: [], createdAt: at, updatedAt: at, expiresAt: at, version: 3,
  };
}

/** What the renderer did before: the tree fast-xml-parser's builder takes. */
function builderTree(value: XmlValue): unknown {
  if (Array.isArray(value)) return { item: value.filter((v) => v !== undefined && v !== null).map(builderTree) };
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined;
  // eslint-disable-next-line no-control-regex
  if (typeof value === 'string') return value.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  if (value === undefined || value === null) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(value)) {
    const converted = builderTree(child);
    if (converted !== undefined) out[name] = converted;
  }
  return out;
}
