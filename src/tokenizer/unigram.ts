/**
 * SentencePiece UNIGRAM segmentation: the Viterbi path that maximises the sum of piece scores
 * (log probabilities). LLaMA uses BPE; this keeps other SentencePiece models loadable.
 */

/** What Viterbi needs to know about the vocabulary. */
export interface UnigramVocab {
  /** Id of a piece that may appear in a segmentation (normal, user-defined), else undefined. */
  lookup(piece: string): number | undefined;
  /** Score of that piece on the path. */
  score(id: number, pieceLength: number): number;
  /** Longest piece, in code points: bounds the inner loop. */
  readonly maxPieceChars: number;
  /** Score of an unknown single character (SentencePiece: lowest score minus 10). */
  readonly unkScore: number;
}

/** One piece of the best path; `id` undefined marks a run of unknown characters. */
export interface UnigramPiece {
  readonly start: number;
  readonly end: number;
  readonly id: number | undefined;
}

/** Best segmentation of `text`; consecutive unknown characters come back as one run, as in SentencePiece. */
export function unigramSegment(text: string, vocab: UnigramVocab): UnigramPiece[] {
  // Code point boundaries in UTF-16 offsets: pieces never split a surrogate pair.
  const bounds: number[] = [0];
  for (let i = 0; i < text.length; ) {
    i += (text.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
    bounds.push(i);
  }
  const n = bounds.length - 1;
  const best = new Float64Array(n + 1).fill(-Infinity);
  const from = new Int32Array(n + 1).fill(-1);
  const via = new Int32Array(n + 1).fill(-1); // id of the piece ending here; -1 = unknown char
  best[0] = 0;
  for (let i = 0; i < n; i++) {
    if (best[i] === -Infinity) continue;
    let hasSingle = false;
    for (let len = 1; len <= vocab.maxPieceChars && i + len <= n; len++) {
      const id = vocab.lookup(text.slice(bounds[i], bounds[i + len]));
      if (id === undefined) continue;
      if (len === 1) hasSingle = true;
      const s = best[i] + vocab.score(id, len);
      if (s > best[i + len]) {
        best[i + len] = s;
        from[i + len] = i;
        via[i + len] = id;
      }
    }
    if (!hasSingle) {
      const s = best[i] + vocab.unkScore;
      if (s > best[i + 1]) {
        best[i + 1] = s;
        from[i + 1] = i;
        via[i + 1] = -1;
      }
    }
  }
  const reversed: UnigramPiece[] = [];
  for (let j = n; j > 0; j = from[j]) {
    const id = via[j] >= 0 ? via[j] : undefined;
    const prevPiece = reversed[reversed.length - 1];
    if (id === undefined && prevPiece !== undefined && prevPiece.id === undefined) {
      reversed[reversed.length - 1] = { start: bounds[from[j]], end: prevPiece.end, id: undefined };
    } else {
      reversed.push({ start: bounds[from[j]], end: bounds[j], id });
    }
  }
  return reversed.reverse();
}
