// A growable (x, y) series in typed arrays: appends are amortised O(1) and a chart reads subarray views, no copies.
export class Series {
  x: Float64Array;
  y: Float64Array;
  length = 0;

  constructor(capacity = 1024) {
    this.x = new Float64Array(capacity);
    this.y = new Float64Array(capacity);
  }

  push(x: number, y: number | null): void {
    // A resumed run repeats steps after its checkpoint: the latest value for a step wins.
    if (this.length && x <= this.x[this.length - 1]) {
      let i = this.length;
      while (i > 0 && this.x[i - 1] >= x) i--;
      this.length = i;
    }
    if (this.length === this.x.length) {
      const x2 = new Float64Array(this.x.length * 2),
        y2 = new Float64Array(this.y.length * 2);
      x2.set(this.x);
      y2.set(this.y);
      this.x = x2;
      this.y = y2;
    }
    this.x[this.length] = x;
    this.y[this.length] = y ?? NaN;
    this.length++;
  }

  clear(): void {
    this.length = 0;
  }

  get xs(): Float64Array {
    return this.x.subarray(0, this.length);
  }

  get ys(): Float64Array {
    return this.y.subarray(0, this.length);
  }

  get last(): number | null {
    return this.length ? this.y[this.length - 1] : null;
  }
}
