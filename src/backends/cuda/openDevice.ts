/**
 * Opens CUDA device `ordinal` the way every user of the GPU here does (the backend, the quantizer):
 * driver loaded and initialised, the device's primary context current, one stream. Failures that mean
 * "no usable GPU" go through `unavailable`, so each caller throws its own error class with its own
 * advice (`--backend cpu` for generation, quantize with `--backend cpu` for the quantizer).
 */
import { loadDriver, type CuStream, type Driver } from './driver.js';

export interface OpenedDevice {
  readonly cu: Driver;
  readonly device: number;
  readonly stream: CuStream;
}

export function openDevice(ordinal: number, unavailable: (reason: string) => Error): OpenedDevice {
  const cu = loadDriver();
  if (typeof cu === 'string') throw unavailable(cu);
  cu.init();
  const count = cu.deviceCount();
  if (count < 1) throw unavailable('the NVIDIA driver reports no CUDA device');
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
    throw unavailable(`CUDA device ${ordinal} asked for ($QLLAMA_CUDA_DEVICE), ${count} present (0..${count - 1})`);
  }
  const device = cu.device(ordinal);
  cu.setCurrent(cu.retainPrimaryContext(device));
  return { cu, device, stream: cu.createStream() };
}
