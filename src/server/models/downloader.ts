/**
 * What the server needs from a Hub downloader. The server only orchestrates (jobs, progress
 * events, refresh of the model list); fetching, resuming and verifying files is the hub
 * module's job (issue 6), adapted to this interface in hubDownloader.ts.
 */
export interface DownloadProgress {
  /** The file being written now. */
  readonly file: string;
  readonly fileBytes: number;
  readonly fileTotal: number;
  /** All files of the job together. */
  readonly bytes: number;
  readonly total: number;
}

export interface RemoteFile {
  readonly path: string;
  readonly size: number;
}

export interface DownloadOptions {
  readonly modelsDir: string;
  /** Only these files (the Model tab's "get file list" → pick one); default: the whole model. */
  readonly files?: readonly string[];
  readonly onProgress: (p: DownloadProgress) => void;
  readonly signal: AbortSignal;
}

export interface ModelDownloader {
  /** The files of `user/repo[:branch]`. */
  listFiles(ref: string): Promise<RemoteFile[]>;
  /** Download into the models folder; resolves to the model's folder. */
  download(ref: string, options: DownloadOptions): Promise<{ readonly dir: string }>;
}
