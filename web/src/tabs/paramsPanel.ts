import type { AppState } from '../appState';
import { field, h } from '../dom';
import { CONTROLS, PRESETS } from '../params';

/** Sampling parameters shared by Chat and Notebook; every change is saved at once. */
export function paramsPanel(state: AppState): HTMLElement {
  const inputs = new Map<string, HTMLInputElement>();
  const stop = h('textarea', { id: 'param-stop', rows: 2, placeholder: 'one per line; \\n for a newline' });
  const sync = (): void => {
    for (const [name, input] of inputs) input.value = String(state.params[name as keyof typeof state.params]);
    stop.value = state.params.stop;
  };
  const rows = CONTROLS.map((c) => {
    const input = h('input', { id: `param-${c.name}`, type: 'number', min: c.min, max: c.max, step: c.step });
    input.addEventListener('change', () => {
      const v = Number(input.value);
      if (input.value !== '' && Number.isFinite(v)) state.setParams({ [c.name]: Math.min(c.max, Math.max(c.min, v)) });
      sync();
    });
    inputs.set(c.name, input);
    return field(c.label, input, c.hint);
  });
  stop.addEventListener('change', () => state.setParams({ stop: stop.value }));
  const presets = h('select', { id: 'param-preset', 'aria-label': 'preset' }, h('option', { value: '' }, 'Preset…'), ...Object.keys(PRESETS).map((p) => h('option', { value: p }, p)));
  presets.addEventListener('change', () => {
    const preset = PRESETS[presets.value];
    if (preset) state.setParams(preset);
    presets.value = '';
    sync();
  });
  sync();
  return h('aside', { class: 'card params', id: 'params' },
    h('details', { open: true }, h('summary', {}, 'Parameters'), presets, h('div', { class: 'grid' }, ...rows), field('stop strings', stop)));
}
