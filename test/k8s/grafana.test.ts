// The Grafana dashboard (k8s/grafana/strata-dashboard.json) queries exactly the metrics strata
// serves: every strata_ name in its queries is one docs/metrics.md lists (the metrics test scrapes
// those from running processes), and every other one is a prom-client default metric.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { describe, expect, test } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'k8s/grafana/strata-dashboard.json'), 'utf8')) as {
  uid: string;
  templating: { list: { name: string; type: string }[] };
  panels: { id: number; title: string; datasource: { uid: string }; targets: { expr: string }[] }[];
};
const documented = new Set([...readFileSync(path.join(ROOT, 'docs/metrics.md'), 'utf8').matchAll(/^\| `(strata_[a-z0-9_]+)` \|/gm)].map((m) => m[1]!));
/** A histogram's series are its name with these endings. */
const baseName = (series: string) => series.replace(/_(bucket|sum|count)$/, '');
const PROMQL_WORDS = new Set(['sum', 'max', 'rate', 'increase', 'by', 'le', 'histogram_quantile']);

describe('Grafana dashboard', () => {
  test('every query names only metrics strata serves', async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const defaults = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    expect(documented.size).toBeGreaterThan(20);
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const { expr } of panel.targets) {
        // Metric names: identifiers not inside {...} label matchers, not PromQL words or label names after by (...).
        const outsideMatchers = expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/by \([^)]*\)/g, '');
        const names = (outsideMatchers.match(/[a-z_][a-z0-9_]*/g) ?? []).filter((w) => !PROMQL_WORDS.has(w) && !/^\d/.test(w));
        expect(names.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        for (const name of names) {
          used.add(name);
          if (name.startsWith('strata_')) expect(documented, `${panel.title}: ${name}`).toContain(baseName(name));
          else expect(defaults, `${panel.title}: ${name}`).toContain(name);
        }
      }
    }
    // The figures an operator looks for first are all on it.
    for (const name of ['strata_datanodes_live', 'strata_chunks_missing', 'strata_chunks_under_replicated', 'strata_repair_queue_length', 'strata_datanode_free_bytes', 'strata_requests_total']) {
      expect(used).toContain(name);
    }
  });

  test('panels have unique ids and query the datasource the dashboard asks for on import', () => {
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource' }));
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const panel of dashboard.panels) expect(panel.datasource.uid, panel.title).toBe('${datasource}');
  });
});
