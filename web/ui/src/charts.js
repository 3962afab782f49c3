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

// A chart is resized only while its element has an area: ECharts' graph (the DAG) cannot lay out
// in a zero-width box (its view transform has no inverse and it throws), and a window can
// briefly be 1×1 (minimised, or while a headless browser takes a full-page screenshot).
addEventListener('resize', () => {
  for (const c of charts) {
    const el = c.getDom();
    if (el.clientWidth > 0 && el.clientHeight > 0) c.resize();
  }
});
