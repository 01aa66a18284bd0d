"""Top stall locations of each kernel in an Nsight Compute report, from its SASS source page.

    ncu --graph-profiling node -k regex:gemv_q4_rpg --launch-skip 420 --launch-count 4 \\
        --section WarpStateStats --section SourceCounters -o /tmp/r node dist/bench/cudaDecodeProfile.js /tmp/m13 1 --steps 4
    ncu -i /tmp/r.ncu-rep --page source --csv --print-source sass > /tmp/r.csv
    python3 bench/ncu/top-stalls.py /tmp/r.csv [N]

prints, per profiled kernel (one table each), its stall reasons' shares over all instructions, then the N instructions (default 45) with the most warp-stall samples,
in program order, with their share of the kernel's samples and their three largest stall reasons. The SASS page
is tens of MB per kernel (the GPU machine's files come back only up to a size): run this there.
(bench/cudaNotes.md, eleventh pass, says what it showed for the decode GEMV and the prompt GEMM.)
"""
import csv
import sys


def num(v: str) -> float:
    try:
        return float(v.replace(',', ''))
    except ValueError:
        return 0.0


def main() -> None:
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 45
    tables, cur, kernel = [], None, '?'
    for r in csv.reader(open(sys.argv[1], newline='')):
        if not r:
            continue
        if r[0] == 'Kernel Name':
            kernel = r[1]
        elif r[0] == 'Address':
            cur = {'kernel': kernel, 'hdr': r, 'rows': []}
            tables.append(cur)
        elif cur is not None:
            cur['rows'].append(r)
    for t in tables:
        h = t['hdr']
        samples = [i for i, c in enumerate(h) if c.startswith('Warp Stall Sampling (All')]
        if not samples:
            continue
        si = samples[0]
        reasons = [i for i, c in enumerate(h) if c.startswith('stall_') and '(Not Issued)' not in c]
        total = sum(num(r[si]) for r in t['rows']) or 1.0
        print(f"=== {t['kernel']}: {total:.0f} samples, {len(t['rows'])} instructions")
        by_reason = sorted(((sum(num(r[i]) for r in t['rows']), h[i]) for i in reasons), reverse=True)
        print('    all instructions: ' + ' '.join(f'{n}={100 * v / total:.1f}%' for v, n in by_reason[:8] if v > 0))
        ranked = sorted(range(len(t['rows'])), key=lambda k: -num(t['rows'][k][si]))[:top]
        for k in sorted(ranked):
            r = t['rows'][k]
            why = sorted(((num(r[i]), h[i]) for i in reasons), reverse=True)[:3]
            print(f"{k:6d} {100 * num(r[si]) / total:5.1f}%  {r[1][:64]:64s} " + ' '.join(f'{n}={v:.0f}' for v, n in why if v > 0))


if __name__ == '__main__':
    main()
