namespace Reference.Routing;

/// <summary>How the fairseq auction ended.</summary>
public enum AuctionStatus
{
    /// <summary>Every token drew a bid within the first 100 rounds (the regular auction; its gap is at most N eps, proofs/base.md).</summary>
    Normal,

    /// <summary>Every token drew a bid, but only after round 100, in fairseq's fallback phase ("suboptimal approximation").</summary>
    Fallback,

    /// <summary>The fallback phase ran <see cref="BalancedAssignmentAuction.FallbackRoundLimit"/> rounds without ending (fairseq
    /// would loop on); the assignment is read from the last round.</summary>
    Unfinished,
}

/// <summary>The result of fairseq's auction.</summary>
/// <param name="Experts">[N]: each token's expert; -1 for a token no expert's final top set holds (possible only when
/// <paramref name="Partition"/> is false).</param>
/// <param name="Objective">The total score of the assignment (summed in token order; -1 entries add nothing).</param>
/// <param name="Rounds">fairseq's counter when the loop ended: the rounds that raised prices.</param>
/// <param name="Status">How the loop ended.</param>
/// <param name="Epsilon">The bid increment eps = max((max S - min S) / 50, 1e-4).</param>
/// <param name="Partition">True when the experts' final top sets are disjoint and cover every token (always so far observed
/// in a normal end; fairseq returns the sets unchecked).</param>
public sealed record BalancedAssignmentAuctionResult(int[] Experts, double Objective, int Rounds, AuctionStatus Status, double Epsilon, bool Partition);

/// <summary>
/// fairseq's auction for BASE layers' balanced assignment (proofs/base.md, Definition: Auction method, <c>method=auction</c>), reproduced from the
/// semantics of <c>balanced_assignment</c> in fairseq's libbase (an auction after Bertsekas 1988, in which experts bid for
/// tokens): double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>With W = S^T [E, N], m = N / E tokens per expert, eps = max((max W - min W) / 50, 1e-4), token prices p = 0, values
/// V = W and counter = 0, each round:</para>
/// <list type="number">
/// <item>each expert e ranks tokens by V_e (larger first, ties to the lower token) and keeps its top m + 1;</item>
/// <item>e bids V_et - V_e,(m+1) + eps on each of its top m tokens t;</item>
/// <item>while 0 &lt; counter &lt; 100, each (expert, token) pair that won in the previous round has its bid replaced by eps
/// (a minimal bid that keeps the token unless someone else bids more);</item>
/// <item>each token's highest bid wins (ties to the lower expert); if every token has a positive bid, stop;</item>
/// <item>p_t += the winning bid; V = W - p; each winning pair gets V_et = max W while counter &lt; 100 (so the winner keeps ranking
/// it first), else V_et = W_et (fairseq's fallback after 100 rounds); counter += 1.</item>
/// </list>
/// <para>The answer is each expert's top m tokens from the last round. Ties are broken by index, where torch's topk leaves the
/// order unspecified. E = 1 assigns every token to expert 0 without bidding (fairseq's top-(m + 1) would fail there).
/// The fallback phase is not guaranteed to end; it is cut after <see cref="FallbackRoundLimit"/> rounds.</para>
/// </remarks>
public static class BalancedAssignmentAuction
{
    /// <summary>fairseq's max_iterations: the regular phase's length.</summary>
    public const int RegularRounds = 100;

    /// <summary>The rounds allowed after the regular phase before the reference gives up (fairseq has no limit).</summary>
    public const int FallbackRoundLimit = 10_000;

    /// <summary>Runs the auction.</summary>
    /// <param name="scores">S [N, E], finite, with E dividing N.</param>
    /// <returns>The assignment, rounds, status and eps.</returns>
    /// <exception cref="ArgumentException">A score is not finite, E = 0, or E does not divide N.</exception>
    public static BalancedAssignmentAuctionResult Assign(double[,] scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int n = scores.GetLength(0), e = scores.GetLength(1);
        BalancedAssignment.CheckBalanced(n, e);
        Guard.Finite(scores, nameof(scores));
        int m = n / e;

        // 1. W = S^T, eps, and the largest score.
        double max = double.NegativeInfinity, min = double.PositiveInfinity;
        foreach (double s in scores)
        {
            max = Math.Max(max, s);
            min = Math.Min(min, s);
        }
        double eps = n == 0 ? 1e-4 : Math.Max((max - min) / 50.0, 1e-4);
        if (n == 0 || e == 1)
        {
            var all = new int[n];
            double total = 0;
            for (int i = 0; i < n; i++)
            {
                total += scores[i, 0];
            }
            return new BalancedAssignmentAuctionResult(all, total, 0, AuctionStatus.Normal, eps, true);
        }
        var value = new double[e, n];      // V [E, N]
        for (int j = 0; j < e; j++)
        {
            for (int t = 0; t < n; t++)
            {
                value[j, t] = scores[t, j];
            }
        }
        var price = new double[n];         // p [N]
        var top = new int[e][];            // each expert's top m + 1 tokens this round
        List<(int Expert, int Token)> lastWinners = [];
        int counter = 0;
        var status = AuctionStatus.Normal;

        while (true)
        {
            // 2. Each expert's top m + 1 tokens and its bids on the first m.
            var bid = new double[e, n];
            for (int j = 0; j < e; j++)
            {
                var row = new double[n];
                for (int t = 0; t < n; t++)
                {
                    row[t] = value[j, t];
                }
                top[j] = Ranking.Order(row).Take(m + 1).ToArray();
                double floor = row[top[j][m]];
                for (int r = 0; r < m; r++)
                {
                    bid[j, top[j][r]] = row[top[j][r]] - floor + eps;
                }
            }

            // 3. Last round's winners keep their tokens with a minimal bid (regular phase only).
            if (counter > 0 && counter < RegularRounds)
            {
                foreach (var (j, t) in lastWinners)
                {
                    bid[j, t] = eps;
                }
            }

            // 4. Each token's highest bid (ties to the lower expert); stop when every token has a positive one.
            var highBid = new double[n];
            var highBidder = new int[n];
            bool allBid = true;
            for (int t = 0; t < n; t++)
            {
                int best = 0;
                for (int j = 1; j < e; j++)
                {
                    if (bid[j, t] > bid[best, t])
                    {
                        best = j;
                    }
                }
                highBidder[t] = best;
                highBid[t] = bid[best, t];
                allBid &= highBid[t] > 0;
            }
            if (allBid)
            {
                status = counter < RegularRounds ? AuctionStatus.Normal : AuctionStatus.Fallback;
                break;
            }
            if (counter >= RegularRounds + FallbackRoundLimit)
            {
                status = AuctionStatus.Unfinished;
                break;
            }

            // 5. Raise prices, recompute values, pin the winners (to max W in the regular phase, to their score after it).
            lastWinners = [];
            for (int t = 0; t < n; t++)
            {
                price[t] += highBid[t];
            }
            for (int j = 0; j < e; j++)
            {
                for (int t = 0; t < n; t++)
                {
                    value[j, t] = scores[t, j] - price[t];
                }
            }
            for (int t = 0; t < n; t++)
            {
                if (highBid[t] > 0)
                {
                    int j = highBidder[t];
                    lastWinners.Add((j, t));
                    value[j, t] = counter < RegularRounds ? max : scores[t, j];
                }
            }
            counter++;
        }

        // 6. The answer: expert e's top m tokens. A token in several sets keeps the lowest expert; a token in none gets -1.
        var experts = new int[n];
        Array.Fill(experts, -1);
        bool partition = true;
        for (int j = 0; j < e; j++)
        {
            for (int r = 0; r < m; r++)
            {
                int t = top[j][r];
                if (experts[t] >= 0)
                {
                    partition = false;
                }
                else
                {
                    experts[t] = j;
                }
            }
        }
        double objective = 0;
        for (int t = 0; t < n; t++)
        {
            if (experts[t] < 0)
            {
                partition = false;
            }
            else
            {
                objective += scores[t, experts[t]];
            }
        }
        return new BalancedAssignmentAuctionResult(experts, objective, counter, status, eps, partition);
    }
}
