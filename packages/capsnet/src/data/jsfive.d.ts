/** The part of jsfive's API (a pure-JavaScript HDF5 reader, shipped without types) that matlab.ts uses. */
declare module 'jsfive' {
  export class Dataset {
    readonly shape: number[];
    readonly dtype: string;
    /** Every element, row-major; a plain array for integer types. */
    readonly value: unknown;
  }
  export class Group {
    readonly keys: string[];
    get(path: string): Dataset | Group;
  }
  export class File extends Group {
    constructor(buffer: ArrayBuffer, filename?: string);
  }
}
