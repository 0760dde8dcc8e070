/** Adam (Kingma & Ba) with the paper's exponentially decaying learning rate; its state is plain arrays so checkpoints can hold it. */
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedKernelAvailable } from '../model/fused.ts';

export interface AdamOptions {
  learningRate: number;
  decayRate: number;
  decaySteps: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** The decayed rate never drops below this (the authors' code: 1e-6); default 0. */
  floor?: number;
}

export class Adam {
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;

  constructor(private readonly options: AdamOptions) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-7;
  }

  /** lr * decayRate^(step / decaySteps), continuous as in tf.train.exponential_decay. */
  learningRate(step = this.step): number {
    return Math.max(this.options.floor ?? 0, this.options.learningRate * this.options.decayRate ** (step / this.options.decaySteps));
  }

  apply(params: Record<string, tf.Variable>, grads: Record<string, tf.Tensor>): void {
    const t = this.step + 1;
    const lr = (this.learningRate(this.step) * Math.sqrt(1 - this.beta2 ** t)) / (1 - this.beta1 ** t);
    const fused = fusedKernelAvailable(FUSED_KERNELS.adam);
    tf.tidy(() => {
      for (const [name, grad] of Object.entries(grads)) {
        const param = params[name]!;
        const m = this.moment(this.m, name, param);
        const v = this.moment(this.v, name, param);
        if (fused) {
          // The same update in one pass (train/backends/wasm-capsule-kernels.ts); it updates m and v in place.
          param.assign(
            tf
              .engine()
              .runKernel(
                FUSED_KERNELS.adam,
                { param, grad, m, v },
                { learningRate: lr, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon },
              ) as tf.Tensor,
          );
          continue;
        }
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(grad, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(grad), 1 - this.beta2)));
        param.assign(tf.sub(param, tf.div(tf.mul(m, lr), tf.add(tf.sqrt(v), this.epsilon))));
      }
    });
    this.step = t;
  }

  private moment(store: Map<string, tf.Variable>, name: string, like: tf.Variable): tf.Variable {
    let moment = store.get(name);
    if (!moment) {
      moment = tf.variable(tf.zerosLike(like), false);
      store.set(name, moment);
    }
    return moment;
  }

  async exportState(): Promise<{ m: Record<string, Float32Array>; v: Record<string, Float32Array> }> {
    const read = async (store: Map<string, tf.Variable>) => {
      const out: Record<string, Float32Array> = {};
      for (const [name, value] of store) out[name] = (await value.data()) as Float32Array;
      return out;
    };
    return { m: await read(this.m), v: await read(this.v) };
  }

  loadState(state: { m: Record<string, Float32Array>; v: Record<string, Float32Array> }, params: Record<string, tf.Variable>, step: number): void {
    this.step = step;
    for (const [store, values] of [
      [this.m, state.m],
      [this.v, state.v],
    ] as const) {
      for (const [name, data] of Object.entries(values)) {
        store.get(name)?.dispose();
        store.set(name, tf.variable(tf.tensor(data, params[name]!.shape), false));
      }
    }
  }

  dispose(): void {
    for (const value of [...this.m.values(), ...this.v.values()]) value.dispose();
    this.m.clear();
    this.v.clear();
  }
}
