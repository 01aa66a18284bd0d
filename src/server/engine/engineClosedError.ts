import { QllamaError } from '../../errors.js';

/**
 * The engine was disposed (model unloaded or replaced, server shutting down) while a run was in
 * flight: the run ends without touching the model again. Engines end such runs quietly (their
 * `run` returns undefined), so a client sees its connection close rather than an error.
 */
export class EngineClosedError extends QllamaError {}
