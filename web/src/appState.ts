/** What the tabs share: the loaded model (requests name it) and the parameters. */
import { loadParams, saveParams, type Params } from './params';

export interface CurrentModel {
  id: string;
  template: string;
  contextLength: number;
}

type Listener = () => void;

export class AppState {
  model: CurrentModel | null = null;
  readonly params: Params = loadParams();
  private readonly listeners: Listener[] = [];

  onChange(l: Listener): void {
    this.listeners.push(l);
  }

  setModel(m: CurrentModel | null): void {
    this.model = m;
    this.emit();
  }

  setParams(p: Partial<Params>): void {
    Object.assign(this.params, p);
    saveParams(this.params);
    this.emit();
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }
}
