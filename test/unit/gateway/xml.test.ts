import { XMLParser } from 'fast-xml-parser';
import { Ec2Error } from '../../../gateway/errors';
import { EC2_XMLNS, renderError, renderResponse } from '../../../gateway/xml';

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
