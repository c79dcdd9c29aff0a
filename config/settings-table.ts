/** The settings schema as the README's Markdown tables (test/unit/config/settings-schema.test.ts keeps them equal). */
import { settingsReadBy, shownDefault, type SettingReader } from './settings-schema';

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\|/g, '\\|');

/** The table of the settings `reader` reads; with flags for `imaging serve`, without for the stage host. */
export function settingsTableMarkdown(reader: SettingReader): string {
  const withFlags = reader !== 'stage';
  const header = withFlags ? '| Environment variable | Flag | Default | Meaning |\n|---|---|---|---|' : '| Environment variable | Default | Meaning |\n|---|---|---|';
  const rows = settingsReadBy(reader).map((s) => {
    const cells = [`\`${s.env}\``, ...(withFlags ? [s.flag ? `\`${s.flag}\`` : '(environment only)'] : []), escape(shownDefault(s, reader)), escape(s.meaning)];
    return `| ${cells.join(' | ')} |`;
  });
  return [header, ...rows].join('\n');
}
