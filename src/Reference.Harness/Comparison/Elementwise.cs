namespace Reference.Harness.Comparison;

/// <summary>How a (candidate, expected) pair relates before any tolerance is applied.</summary>
internal enum PairKind
{
    /// <summary>Both finite: the policy's own rule decides.</summary>
    Finite,
    /// <summary>Both NaN: a match (both sides agree the value is undefined).</summary>
    BothNaN,
    /// <summary>The same infinity on both sides: a match.</summary>
    SameInfinity,
    /// <summary>Exactly one side is NaN.</summary>
    NaNMismatch,
    /// <summary>Neither is NaN, at least one is infinite, and they differ.</summary>
    InfMismatch,
}

/// <summary>The element-by-element comparison loop shared by every policy, with the NaN/Inf rules.</summary>
internal static class Elementwise
{
    /// <summary>
    /// The NaN/Inf rules of every policy. NaN against NaN matches: both sides agree that the value is undefined
    /// (e.g. a 0/0 both computed), and no tolerance can say more. An infinity matches only the same infinity.
    /// NaN against anything else, or an infinity against anything else, is a mismatch of its own kind.
    /// </summary>
    internal static PairKind Classify(double candidate, double expected)
    {
        bool candidateNaN = double.IsNaN(candidate);
        bool expectedNaN = double.IsNaN(expected);
        if (candidateNaN && expectedNaN)
        {
            return PairKind.BothNaN;
        }
        if (candidateNaN || expectedNaN)
        {
            return PairKind.NaNMismatch;
        }
        if (double.IsInfinity(candidate) || double.IsInfinity(expected))
        {
            return candidate == expected ? PairKind.SameInfinity : PairKind.InfMismatch;
        }
        return PairKind.Finite;
    }

    /// <summary>
    /// Checks the inputs of a comparison: lengths agree with each other and with the shape.
    /// </summary>
    internal static long CheckInputs(string arrayName, int candidateLength, int expectedLength, IReadOnlyList<int> shape)
    {
        ArgumentNullException.ThrowIfNull(arrayName);
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        for (int d = 0; d < shape.Count; d++)
        {
            if (shape[d] < 0)
            {
                throw new ArgumentException($"{arrayName}: shape {ShapeText(shape)} has a negative dimension", nameof(shape));
            }
            count *= shape[d];
        }
        if (candidateLength != expectedLength)
        {
            throw new ArgumentException(
                $"{arrayName}: the candidate has {candidateLength} elements but the reference has {expectedLength}",
                "candidate");
        }
        if (count != expectedLength)
        {
            throw new ArgumentException(
                $"{arrayName}: shape {ShapeText(shape)} holds {count} elements but the arrays have {expectedLength}",
                nameof(shape));
        }
        return count;
    }

    /// <summary>
    /// Compares element by element. A pair of finite values is a mismatch iff <paramref name="finiteMismatch"/>
    /// says so; the NaN/Inf rules of <see cref="Classify"/> decide every other pair. When the policy's rule is
    /// |c - r| &lt;= allowed(i, r) (i the flat position, for a bound that differs by row), <paramref name="allowedError"/>
    /// gives it and the report carries the margin max |c - r| / allowed(i, r) over the finite pairs.
    /// </summary>
    internal static ComparisonReport Compare(
        string arrayName,
        string policyName,
        ReadOnlySpan<double> candidate,
        ReadOnlySpan<double> expected,
        IReadOnlyList<int> shape,
        Func<int, double, double, bool> finiteMismatch,
        string? detail,
        Func<int, double, double>? allowedError = null)
    {
        long count = CheckInputs(arrayName, candidate.Length, expected.Length, shape);
        long mismatches = 0, nanMismatches = 0, infMismatches = 0;
        double maxAbs = 0.0, maxRel = 0.0, margin = 0.0;
        var first = new List<Mismatch>(ComparisonReport.MaxListedMismatches);
        for (int i = 0; i < candidate.Length; i++)
        {
            double c = candidate[i], r = expected[i];
            bool mismatch;
            switch (Classify(c, r))
            {
                case PairKind.NaNMismatch:
                    nanMismatches++;
                    mismatch = true;
                    break;
                case PairKind.InfMismatch:
                    infMismatches++;
                    mismatch = true;
                    break;
                case PairKind.Finite:
                    double abs = Math.Abs(c - r);
                    maxAbs = Math.Max(maxAbs, abs);
                    if (r != 0.0)
                    {
                        maxRel = Math.Max(maxRel, abs / Math.Abs(r));
                    }
                    mismatch = finiteMismatch(i, c, r);
                    if (allowedError is not null && abs > 0.0)
                    {
                        double allowed = allowedError(i, r);
                        margin = Math.Max(margin, allowed > 0.0 ? abs / allowed : double.PositiveInfinity);
                    }
                    break;
                default:
                    mismatch = false;
                    break;
            }
            if (mismatch)
            {
                mismatches++;
                if (first.Count < ComparisonReport.MaxListedMismatches)
                {
                    first.Add(new Mismatch(i, IndexText(i, shape), c, r)
                    {
                        Allowed = allowedError is not null && Classify(c, r) == PairKind.Finite ? allowedError(i, r) : null,
                    });
                }
            }
        }
        return new ComparisonReport
        {
            ArrayName = arrayName,
            PolicyName = policyName,
            Count = count,
            MismatchCount = mismatches,
            NaNMismatches = nanMismatches,
            InfMismatches = infMismatches,
            MaxAbsError = maxAbs,
            MaxRelError = maxRel,
            FirstMismatches = first.AsReadOnly(),
            Detail = detail,
            Margin = allowedError is null ? null : margin,
        };
    }

    /// <summary>The C-order multi-index of a flat position, as a numpy tuple: <c>(2, 0)</c>, <c>(5,)</c>, <c>()</c>.</summary>
    internal static string IndexText(long flatIndex, IReadOnlyList<int> shape)
    {
        var index = new long[shape.Count];
        long rest = flatIndex;
        for (int d = shape.Count - 1; d >= 0; d--)
        {
            index[d] = rest % shape[d];
            rest /= shape[d];
        }
        return "(" + string.Join(", ", index) + (index.Length == 1 ? ",)" : ")");
    }

    private static string ShapeText(IReadOnlyList<int> shape) =>
        "(" + string.Join(", ", shape) + (shape.Count == 1 ? ",)" : ")");
}
