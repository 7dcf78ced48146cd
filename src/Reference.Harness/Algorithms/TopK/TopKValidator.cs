using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a top-k candidate directly against the logits (proofs/tolerance.md, Definition: Decisions and near-ties): where the reference sees a tie at
/// the top-k boundary, or a near-tie within the candidate's precision, any valid choice passes; any other choice fails.
/// </summary>
/// <remarks>
/// A candidate row is valid when its k experts are distinct and in range, ranked in descending order of the selection
/// key P + b, and no unchosen expert beats a chosen one, each comparison allowing a slack of
/// <see cref="TieSlack"/>. Its weights are then compared with P at the candidate's own experts (normalized when asked),
/// so a different but valid choice is judged on the weights it implies.
/// </remarks>
public sealed class TopKValidator : IValidator
{
    /// <summary>Judges the candidate's experts and weights (those it contains) with <see cref="Validate"/>.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>A report for experts and one for weights, for those the candidate has.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        return Validate(
            call.Matrix("logits"), TopKAlgorithm.Options(call), context.Expected["experts"].ToDoubles(),
            context.Candidate.TryGetValue("experts", out var x) ? x.ToDoubles() : null,
            context.Candidate.TryGetValue("weights", out var w) ? w.ToDoubles() : null,
            context.Format, context.FormatOf("weights"), TopKAlgorithm.RunScores(call));
    }

    /// <summary>
    /// The slack allowed when comparing two selection keys of one row, for a candidate computed in <paramref name="format"/>.
    /// A softmax over E experts in precision u sums E terms (at most (E - 1)u relative error) and adds a few roundings
    /// for the exp, the division and the bias, so each candidate key is within (E + 4) u max_e (|P_ie| + |b_e|) of the
    /// exact one (the magnitude of the terms, not of the key: P + b can cancel, as with DeepSeek-V3's bias). Two keys can
    /// then swap order when they differ by up to twice that: the slack is 2 (E + 4) u max_e (|P_ie| + |b_e|)
    /// (proofs/topk.md, theorem topk.kernel-equals-reference).
    /// </summary>
    /// <param name="experts">E.</param>
    /// <param name="maxAbsKey">max_e (|P_ie| + |b_e|) over the row.</param>
    /// <param name="format">The candidate's precision.</param>
    public static double TieSlack(int experts, double maxAbsKey, NumberFormat format) =>
        2.0 * (experts + 4) * Precision.UnitRoundoff(format) * maxAbsKey;

    /// <summary>Validates candidate experts and/or weights.</summary>
    /// <param name="logits">X [N, E].</param>
    /// <param name="options">The routing options.</param>
    /// <param name="referenceExperts">The reference's experts [N * k] (flat).</param>
    /// <param name="experts">The candidate's experts [N * k] (flat), or null when it has none.</param>
    /// <param name="weights">The candidate's weights [N * k] (flat), or null when it has none.</param>
    /// <param name="format">The precision the candidate's selection is judged in (its near-ties).</param>
    /// <param name="weightsFormat">The precision <paramref name="weights"/> is judged in.</param>
    /// <param name="scores">The scores P [N, E] the reference ranked (<see cref="TopKResult.Scores"/>), when the caller
    /// has them; null: computed here.</param>
    /// <returns>A report for experts and one for weights, for those the candidate has.</returns>
    public static IReadOnlyList<ComparisonReport> Validate(
        double[,] logits, TopKOptions options, double[] referenceExperts, double[]? experts, double[]? weights, NumberFormat format,
        NumberFormat weightsFormat, double[,]? scores = null)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(referenceExperts);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;
        var p = scores ?? RouterScores.Compute(logits, options.Score);
        var shape = new[] { n, k };

        // The expected arrays start as the reference's. Where the candidate's row is a different but valid choice,
        // its experts replace the reference's, and the expected weights follow the candidate's experts.
        var expectedExperts = new double[n * k];
        var expectedWeights = new double[n * k];
        var rowProblems = new string?[n]; // [N]: why the candidate's row is invalid, null where it is valid
        var rowSums = options.Normalize ? new double[n] : null;
        // Rows are independent: each block of rows writes only its own entries, so the result does not depend on the
        // schedule; the problems are reported in token order below.
        const int rowsPerBlock = 512;
        Parallel.For(0, (n + rowsPerBlock - 1) / rowsPerBlock, () => (new double[e], new double[k]), (block, _, buffers) =>
        {
            var (key, selectedLogits) = buffers;
            for (int i = block * rowsPerBlock, end = Math.Min(n, i + rowsPerBlock); i < end; i++)
            {
                JudgeRow(i, logits, options, p, referenceExperts, experts, format, key, selectedLogits, expectedExperts, expectedWeights,
                    rowProblems, rowSums);
            }
            return buffers;
        }, _ => { });
        var problems = new List<string>();
        for (int i = 0; i < n && problems.Count < 3; i++)
        {
            if (rowProblems[i] is { } problem)
            {
                problems.Add($"token {i}: {problem}");
            }
        }

        var reports = new List<ComparisonReport>();
        if (experts is not null)
        {
            var report = new ExactPolicy().Compare("experts", experts, expectedExperts, shape);
            reports.Add(problems.Count == 0 ? report : report with { Detail = "invalid routing: " + string.Join("; ", problems) });
        }
        if (weights is not null)
        {
            reports.Add(RoutingSupport.WeightsReport("weights", weights, expectedWeights, shape, weightsFormat, e + k, rowSums));
        }
        return reports;
    }

    /// <summary>Row i of <see cref="Validate"/>: the expected experts (the candidate's where valid, else the reference's),
    /// the weights they imply, the row's problem and its sum of selected scores.</summary>
    private static void JudgeRow(
        int i, double[,] logits, TopKOptions options, double[,] p, double[] referenceExperts, double[]? experts, NumberFormat format,
        double[] key, double[] selectedLogits, double[] expectedExperts, double[] expectedWeights, string?[] rowProblems, double[]? rowSums)
    {
        int e = key.Length, k = selectedLogits.Length;
        double maxAbs = 0;
        for (int j = 0; j < e; j++)
        {
            key[j] = p[i, j] + (options.Bias?[j] ?? 0.0);
            maxAbs = Math.Max(maxAbs, Math.Abs(p[i, j]) + Math.Abs(options.Bias?[j] ?? 0.0));
        }
        double slack = TieSlack(e, maxAbs, format);
        var row = new int[k];
        for (int j = 0; j < k; j++)
        {
            row[j] = (int)referenceExperts[i * k + j];
        }
        if (experts is not null)
        {
            rowProblems[i] = Problem(experts.AsSpan(i * k, k), key, slack, out var candidateRow);
            if (rowProblems[i] is null)
            {
                row = candidateRow;
            }
        }
        for (int j = 0; j < k; j++)
        {
            expectedExperts[i * k + j] = row[j];
            selectedLogits[j] = logits[i, row[j]];
        }
        var normalized = options.Normalize ? RouterScores.Normalized(selectedLogits, options.Score) : null;
        if (rowSums is not null)
        {
            for (int j = 0; j < k; j++)
            {
                rowSums[i] += p[i, row[j]];
            }
        }
        for (int j = 0; j < k; j++)
        {
            expectedWeights[i * k + j] = normalized?[j] ?? p[i, row[j]];
        }
    }

    /// <summary>Why a candidate row is not a valid top-k choice for the keys within the slack, in words; null when it is
    /// one (then <paramref name="row"/> holds it).</summary>
    private static string? Problem(ReadOnlySpan<double> candidate, double[] key, double slack, out int[] row)
    {
        int k = candidate.Length, e = key.Length;
        row = new int[k];
        var chosen = new bool[e];
        for (int j = 0; j < k; j++)
        {
            double c = candidate[j];
            if (c < 0 || c >= e || c != Math.Floor(c))
            {
                return $"choice {j} = {c} is not an expert 0..{e - 1}";
            }
            if (chosen[(int)c])
            {
                return $"expert {c} is chosen twice";
            }
            row[j] = (int)c;
            chosen[row[j]] = true;
        }
        // Descending order, within the slack.
        for (int j = 0; j + 1 < k; j++)
        {
            if (key[row[j]] < key[row[j + 1]] - slack)
            {
                return $"not in descending order: choice {j} is expert {row[j]} (score {key[row[j]]:R}) but choice {j + 1} is "
                       + $"expert {row[j + 1]} (score {key[row[j + 1]]:R})";
            }
        }
        // No unchosen expert beats the weakest chosen one by more than the slack.
        int weakest = row[0];
        foreach (int x in row)
        {
            weakest = key[x] < key[weakest] ? x : weakest;
        }
        for (int x = 0; x < e; x++)
        {
            if (!chosen[x] && key[x] > key[weakest] + slack)
            {
                return $"expert {x} (score {key[x]:R}) is left out for expert {weakest} (score {key[weakest]:R})";
            }
        }
        return null;
    }
}
