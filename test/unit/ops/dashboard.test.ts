/**
 * The Grafana dashboard (charts/imaging/dashboards/imaging.json) reads only series the service
 * exports: every metric a panel queries is registered by ops/metrics.ts (with a histogram's
 * _bucket/_sum/_count), and every imaging_* metric has a panel.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { createServiceMetrics } from '../../../ops/metrics';

const DASHBOARD = join(__dirname, '../../../charts/imaging/dashboards/imaging.json');

interface Panel {
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

/** Every series name the registry exposes: counters and gauges by name, histograms by their three series. */
async function exportedSeries(): Promise<Set<string>> {
  const { registry } = createServiceMetrics({ process: 'dashboard-test' });
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
  }
  return names;
}

/** Metric names in a PromQL expression: identifiers followed by a selector or a range, or standing alone in a function call. */
function metricsIn(expr: string): string[] {
  const withoutLabels = expr.replace(/\{[^}]*\}/g, '{}').replace(/\[[^\]]*\]/g, '[]');
  const words = withoutLabels.match(/[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*[{[])/g) ?? [];
  return [...new Set(words.filter((w) => !['by', 'without', 'sum', 'max', 'rate', 'increase'].includes(w)))];
}

const panelsOf = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...panelsOf(p.panels ?? [])]);

test('every metric the dashboard queries is exported by the service', async () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; uid: string };
  expect(dashboard.uid).toBe('imaging-service');
  const exported = await exportedSeries();
  const queried = new Set<string>();
  for (const panel of panelsOf(dashboard.panels)) {
    for (const target of panel.targets ?? []) {
      const metrics = metricsIn(target.expr);
      expect([panel.title, metrics.length > 0]).toEqual([panel.title, true]);
      for (const metric of metrics) {
        expect([panel.title, metric, exported.has(metric)]).toEqual([panel.title, metric, true]);
        queried.add(metric.replace(/_(bucket|sum|count)$/, ''));
      }
    }
  }
  // And every metric of the service has a panel.
  const own = [...exported].filter((name) => name.startsWith('imaging_') && !/_(bucket|sum|count)$/.test(name));
  for (const name of own) expect([name, queried.has(name)]).toEqual([name, true]);
});

test('the metric-name reader finds names before selectors and ranges only', () => {
  expect(metricsIn('histogram_quantile(0.95, sum by (stage, le) (rate(imaging_stage_duration_seconds_bucket{job=~"$job"}[5m])))')).toEqual([
    'imaging_stage_duration_seconds_bucket',
  ]);
  expect(metricsIn('sum by (to) (rate(imaging_task_state_changes_total{a="b"}[$__rate_interval])) / max(nope_total{})')).toEqual([
    'imaging_task_state_changes_total',
    'nope_total',
  ]);
});
