import type { DeviceSampling } from '../backends/backend.js';

/**
 * What generation needs from a model: feed tokens, get next-token logits. Implemented by
 * `LlamaModel` (src/model/llama.ts) on any backend; generation code depends only on this.
 */
export interface CausalLm {
  readonly vocabSize: number;
  /** maximum sequence length (max_position_embeddings, or --ctx) */
  readonly contextLength: number;
  /**
   * Feed `tokens` at positions startPos..startPos+n-1. The KV cache must already hold positions
   * 0..startPos-1 of the same sequence (later positions are overwritten). Returns the logits of
   * the last fed position, `[vocabSize]` f32. Throws ContextOverflowError past contextLength.
   */
  forward(tokens: readonly number[], startPos: number): Promise<Float32Array>;
  /** Like `forward`, but returns only argmax(logits) (lowest id on ties), computed where the logits are. */
  forwardArgmax?(tokens: readonly number[], startPos: number): Promise<number>;
  /**
   * Like `forward`, but draws the next id where the logits are (Backend.sample) with the settings
   * and uniform from `Sampler.deviceSampling`. Returns the id, or the logits (`[vocabSize]` f32, as
   * `forward` returns them) when the backend cannot draw it, for `Sampler.sample` on the host.
   */
  forwardSample?(tokens: readonly number[], startPos: number, sampling: DeviceSampling): Promise<number | Float32Array>;
}
