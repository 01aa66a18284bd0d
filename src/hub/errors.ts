import { QllamaError } from '../errors.js';

/**
 * Failures of talking to the Hugging Face Hub or of writing what it sends. Each says what to do
 * next, because the person reading it is usually halfway through a multi-GB download.
 */

/** `user/repo[:branch]` is not a valid Hub model reference. Exit code 2, like a bad flag. */
export class InvalidModelRefError extends QllamaError {
  override readonly exitCode = 2;
}

/** 401/403: the repo is private or gated, or the token is wrong. */
export class HubAuthError extends QllamaError {}

/** 404 on the repo itself. */
export class HubRepoNotFoundError extends QllamaError {}

/** 404 on the revision (branch, tag or commit) of a repo that exists. */
export class HubRevisionNotFoundError extends QllamaError {}

/** 404 on one file of a revision that exists. */
export class HubFileNotFoundError extends QllamaError {}

/** Any other unexpected HTTP status or malformed API answer. */
export class HubHttpError extends QllamaError {}

/** The connection kept failing after the retries; the partial file is kept for the next run. */
export class HubNetworkError extends QllamaError {}

/** The downloaded bytes do not hash to what the Hub says; the file has been deleted. */
export class ChecksumMismatchError extends QllamaError {}

/**
 * ENOSPC / EDQUOT while writing (the partial file is kept so the next run resumes). One class
 * for the whole project: the safetensors writer's, so callers match a single name.
 */
export { DiskFullError } from '../formats/safetensorsWriter.js';
