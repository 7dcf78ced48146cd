using Reference.Harness.Comparison;
using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>base</c>: the exact method's experts by the MaxScore certificate with k = 1 and C = N/E,
/// the auction's outputs exactly, objectives and gaps within <see cref="MaxScoreValidator.ObjectivePolicy"/>.</summary>
public sealed class BaseValidator : IValidator
{
    /// <summary>Judges experts (with the exact certificate for method=exact, exactly for the auction), rounds, objective and
    /// gap (those the candidate contains).</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var scores = call.Matrix("scores");
        int n = scores.GetLength(0), e = scores.GetLength(1);
        var candidate = context.Candidate;
        var expected = context.Expected;
        var reports = new List<ComparisonReport>();
        var referenceExperts = expected["experts"].ToDoubles();
        var terms = new double[n];
        for (int i = 0; i < n; i++)
        {
            terms[i] = scores[i, (int)referenceExperts[i]];
        }
        bool exact = call.Parameters.GetChoice("method") == "exact";
        if (candidate.TryGetValue("experts", out var x))
        {
            if (exact)
            {
                var experts = MaxScoreValidator.ToMatrix(x.ToDoubles(), n, 1);
                bool usable = MaxScoreValidator.InRange(experts, e);
                var check = usable ? MaxScoreCertificate.Check(scores, 1, n / e, experts!) : null;
                reports.Add(MaxScoreValidator.Verdict("experts", "maxscore-certificate(exact)", n, check is { Optimal: true },
                    check is { Feasible: true } ? check.Improvement : 0.0, check?.Describe() ?? "an entry is not an expert index"));
            }
            else
            {
                reports.Add(new ExactPolicy().Compare("experts", x.ToDoubles(), referenceExperts, [n, 1]));
            }
        }
        if (candidate.TryGetValue("rounds", out var r))
        {
            reports.Add(new ExactPolicy().Compare("rounds", r.ToDoubles(), expected["rounds"].ToDoubles(), []));
        }
        foreach (var name in new[] { "objective", "gap" })
        {
            if (candidate.TryGetValue(name, out var v) && expected.ContainsKey(name))
            {
                var policy = MaxScoreValidator.ObjectivePolicy(terms, e, context.FormatOf(name), name == "gap" ? 2 : 1);
                reports.Add(policy.Compare(name, v.ToDoubles(), expected[name].ToDoubles(), []));
            }
        }
        return reports;
    }
}
