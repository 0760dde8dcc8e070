/** What the page holds, as `window.capsnet` for the end-to-end tests (test/e2e/serve-page.test.ts) and the console. */
import type { Classification, Classifier, DeviceRequest } from '@capsnet-onnx/runtime/web';
import type { ModelInfo } from '../api.ts';
import type { Figure4 } from './perturb.ts';
import type { CouplingMap, RoutingSession, RoutingView } from './routing.ts';

export interface PageState {
  info: ModelInfo | null;
  model: Classifier | null;
  /** The device request the working model was loaded with. */
  device: DeviceRequest;
  loading: boolean;
  /** Model work in progress (classify, decode, routing, figure 4): 0 when the page is idle. */
  busy: number;
  classifyCount: number;
  decodeCount: number;
  analysisCount: number;
  input: Float32Array | null;
  /** The input has ink (a blank pad or image still gets classified: "no digit"). */
  inputInk: boolean;
  inputSource: string;
  result: Classification | null;
  deltas: Float32Array;
  timings: { load: number; classify: number; decode: number; analysis: number };
  /** The routing session of the working model, or why there is none. */
  routingSession: RoutingSession | string | null;
  coupling: CouplingMap[] | null;
  /** The class whose routing is shown; null: the winning one. */
  routingClass: number | null;
  routing: RoutingView | string | null;
  figure: Figure4 | null;
}

declare global {
  interface Window {
    capsnet: PageState;
  }
}
