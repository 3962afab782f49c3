// ECharts, tree-shaken to what the UI draws (line, bar, graph) and rendered as SVG, so that
// chart text is in the DOM (the browser tests read the DAG's node labels).
import * as echarts from 'echarts/core';
import { LineChart, BarChart, GraphChart } from 'echarts/charts';
import { GridComponent, TooltipComponent, LegendComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';

echarts.use([LineChart, BarChart, GraphChart, GridComponent, TooltipComponent, LegendComponent, SVGRenderer]);

const charts = new Set();

/** An ECharts instance on el, resized with the window; dispose() it when the page goes. */
export function chart(el) {
  const c = echarts.init(el, null, { renderer: 'svg' });
  charts.add(c);
  return c;
}

/** Disposes every chart (on page change). */
export function disposeCharts() {
  for (const c of charts) c.dispose();
  charts.clear();
}

addEventListener('resize', () => { for (const c of charts) c.resize(); });
