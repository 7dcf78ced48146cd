using ILGPU;
using ILGPU.Runtime;
using Reference.Kernels.Routing;
using Reference.Routing;

namespace Reference.Gpu.Routing;

/// <summary>The scalar arguments of the capacity kernels.</summary>
internal struct CapacityArgs
{
    public int Tokens, Experts, K, Capacity;
    public int Sigmoid, HasBias, Before, Policy;
}

/// <summary>
/// Top-k routing with expert capacity (proofs/capacity.md, Definition) as ILGPU kernels (proofs/capacity.md, "The gpu
/// path"), every drop policy, capacity rule and renormalization:
/// <list type="number">
/// <item>top-k, one thread per token: float32 scores (softmax or sigmoid, the CPU kernel's operations), selection keys
/// score + bias, insertion top-k (ties to the lower expert), raw weights and the "before" renormalization in log space;</item>
/// <item>batch-priority only: each token's rank by first-choice score (ties to the lower token), one thread per token;</item>
/// <item>score and logit only: each request's rank among its expert's requests by value (ties to the lower token), kept
/// when below C, one thread per request;</item>
/// <item>dispatch, one group per expert: the N·k requests in the policy's priority order are cut into one segment per
/// thread, and an exclusive prefix sum (Hillis-Steele, in shared memory, with barriers) of the segments' counts of
/// "this request goes to me" gives each request its slot; it is kept when its slot is below C (for score and logit,
/// the kept ones of step 3, in token order), and load = min(count, C);</item>
/// <item>"after" only: log-space renormalization over each token's kept requests, one thread per token.</item>
/// </list>
/// It computes what <see cref="Reference.Routing.Capacity"/> computes up to float32 rounding (the same near-tie latitude, which the
/// capacity validator accepts).
/// </summary>
public static class CapacityGpu
{
    /// <summary>Routes N tokens over E experts with capacity on the accelerator.</summary>
    /// <param name="gpu">The accelerator.</param>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k, score, normalization, capacity rule, policy, optional bias (narrowed to float32).</param>
    /// <returns>experts, weights and slots [N, k] flat, load [E] and C.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, k is outside 1..E, a logit or bias is not finite, or the capacity rule is invalid.</exception>
    public static CapacityKernelResult Route(GpuAccelerator gpu, float[] logits, int tokens, int experts, CapacityOptions options)
    {
        ArgumentNullException.ThrowIfNull(gpu);
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = tokens, e = experts, k = options.K;
        if (n < 0 || e < 1 || (long)n * e != logits.LongLength)
        {
            throw new ArgumentException($"logits has {logits.Length} elements, not N * E = {n} * {e}", nameof(logits));
        }
        for (int x = 0; x < logits.Length; x++)
        {
            if (!float.IsFinite(logits[x]))
            {
                throw new ArgumentException($"logits[{x / e}, {x % e}] is {Guard.Describe(logits[x])}; logits must be finite", nameof(logits));
            }
        }
        Guard.InRange(k, 1, e, "k");
        float[] bias = new float[e];
        if (options.Bias is { } givenBias)
        {
            Guard.Length(givenBias.Count, e, "bias", $"logits has E = {e} columns");
            Guard.Finite(givenBias, "bias");
            bias = givenBias.Select(x => (float)x).ToArray();
        }
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);
        var result = new CapacityKernelResult(new int[n * k], new float[n * k], new int[n * k], new int[e], c);
        if (n == 0)
        {
            return result;
        }
        var args = new CapacityArgs
        {
            Tokens = n,
            Experts = e,
            K = k,
            Capacity = c,
            Sigmoid = options.Score == ScoreFunction.Sigmoid ? 1 : 0,
            HasBias = options.Bias is null ? 0 : 1,
            Before = options.Normalize == Renormalization.Before ? 1 : 0,
            Policy = (int)options.Policy,
        };

        var topK = gpu.Kernel("capacity.topk", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>, CapacityArgs>(TopKKernel));
        var rank = gpu.Kernel("capacity.rank", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, CapacityArgs>(TokenRankKernel));
        var byValue = gpu.Kernel("capacity.by-value", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>,
            ArrayView<int>, CapacityArgs>(KeepByValueKernel));
        var dispatch = gpu.Kernel("capacity.dispatch", a => a.LoadStreamKernel<ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>,
            ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>, CapacityArgs>(DispatchKernel));
        var after = gpu.Kernel("capacity.after", a => a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, CapacityArgs>(AfterKernel));

        lock (gpu.RunLock)
        {
            using var memory = new DeviceMemory(gpu.Accelerator);
            int requests = n * k, group = gpu.GroupSize;
            var dLogits = memory.Upload(logits);
            var dBias = memory.Upload(bias);
            var scores = memory.Zeros<float>((long)n * e);
            var selected = memory.Zeros<int>(requests);
            var weights = memory.Zeros<float>(requests);           // pre-drop weights (raw, or renormalized "before")
            var top1 = memory.Zeros<float>(n);
            var choice = memory.Zeros<int>((long)n * e);            // choice[i, x] = j when token i chose x as its j-th, else -1
            var eligible = memory.Zeros<int>(requests);
            var tokenAtRank = memory.Zeros<int>(n);
            var outExperts = memory.Zeros<int>(requests);
            var outWeights = memory.Zeros<float>(requests);
            var outSlots = memory.Zeros<int>(requests);
            var load = memory.Zeros<int>(e);
            int tokenGroups = (n + group - 1) / group;

            topK(new KernelConfig(tokenGroups, group), dLogits, dBias, scores, selected, weights, top1, choice, eligible, outWeights, outExperts, outSlots, args);
            if (options.Policy == DropPolicy.BatchPriority)
            {
                rank(new KernelConfig(tokenGroups, group), top1, tokenAtRank, args);
            }
            if (options.Policy is DropPolicy.Score or DropPolicy.Logit)
            {
                byValue(new KernelConfig((requests + group - 1) / group, group), dLogits, selected, weights, choice, eligible, args);
            }
            dispatch(new KernelConfig(e, group, SharedMemoryConfig.RequestDynamic<int>(group)),
                selected, eligible, tokenAtRank, weights, outExperts, outWeights, outSlots, load, args);
            if (options.Normalize == Renormalization.After)
            {
                after(new KernelConfig(tokenGroups, group), dLogits, outExperts, outWeights, args);
            }
            memory.Download(outExperts, requests).CopyTo(result.Experts, 0);
            memory.Download(outWeights, requests).CopyTo(result.Weights, 0);
            memory.Download(outSlots, requests).CopyTo(result.Slots, 0);
            memory.Download(load, e).CopyTo(result.Load, 0);
        }
        return result;
    }

    /// <summary>Step 1, one thread per token: scores, top-k, pre-drop weights, the raw first-choice score (batch-priority
    /// ranks tokens by it), the choice map, and the outputs initialized as dropped.</summary>
    internal static void TopKKernel(ArrayView<float> logits, ArrayView<float> bias, ArrayView<float> scores, ArrayView<int> selected,
                                    ArrayView<float> weights, ArrayView<float> top1, ArrayView<int> choice, ArrayView<int> eligible,
                                    ArrayView<float> outWeights, ArrayView<int> outExperts, ArrayView<int> outSlots, CapacityArgs a)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= a.Tokens)
        {
            return;
        }
        int e = a.Experts, k = a.K;
        long row = (long)i * e;

        // Scores: softmax (max-shifted, exp, divided by the sum) or sigmoid 1 / (1 + exp(-x)).
        if (a.Sigmoid != 0)
        {
            for (int x = 0; x < e; x++)
            {
                scores[row + x] = 1f / (1f + MathF.Exp(-logits[row + x]));
            }
        }
        else
        {
            float max = float.NegativeInfinity;
            for (int x = 0; x < e; x++)
            {
                max = Math.Max(max, logits[row + x]);
            }
            float sum = 0f;
            for (int x = 0; x < e; x++)
            {
                float p = MathF.Exp(logits[row + x] - max);
                scores[row + x] = p;
                sum += p;
            }
            for (int x = 0; x < e; x++)
            {
                scores[row + x] /= sum;
            }
        }

        // Insertion top-k on the keys score + bias: best first, a later expert displaces only a strictly smaller key.
        int count = 0;
        long first = (long)i * k;
        for (int x = 0; x < e; x++)
        {
            float key = Key(scores, bias, row, x, a);
            if (count == k && !(key > Key(scores, bias, row, selected[first + k - 1], a)))
            {
                continue;
            }
            int pos = count == k ? k - 1 : count;
            while (pos > 0 && key > Key(scores, bias, row, selected[first + pos - 1], a))
            {
                selected[first + pos] = selected[first + pos - 1];
                pos--;
            }
            selected[first + pos] = x;
            if (count < k)
            {
                count++;
            }
        }

        for (int x = 0; x < e; x++)
        {
            choice[row + x] = -1;
        }
        for (int j = 0; j < k; j++)
        {
            long r = first + j;
            choice[row + selected[r]] = j;
            weights[r] = scores[row + selected[r]];
            eligible[r] = 1;
            outExperts[r] = -1;
            outSlots[r] = -1;
            outWeights[r] = 0f;
        }
        if (a.Before != 0)
        {
            Renormalize(logits, selected, weights, i, a, keptOnly: false);
        }
        top1[i] = scores[row + selected[first]];
    }

    /// <summary>Step 2 (batch-priority), one thread per token: rank = #tokens with a larger raw first-choice score, or an
    /// equal one and a lower index; tokenAtRank[rank] = token.</summary>
    internal static void TokenRankKernel(ArrayView<float> top1, ArrayView<int> tokenAtRank, CapacityArgs a)
    {
        int i = Grid.GlobalIndex.X;
        if (i >= a.Tokens)
        {
            return;
        }
        float mine = top1[i];
        int rank = 0;
        for (int other = 0; other < a.Tokens; other++)
        {
            float theirs = top1[other];
            if (theirs > mine || (theirs == mine && other < i))
            {
                rank++;
            }
        }
        tokenAtRank[rank] = i;
    }

    /// <summary>Step 3 (score, logit), one thread per request: kept (eligible) when fewer than C requests to the same
    /// expert have a larger value, or an equal one and a lower token. Values: the pre-drop weight (score) or the logit.</summary>
    internal static void KeepByValueKernel(ArrayView<float> logits, ArrayView<int> selected, ArrayView<float> weights, ArrayView<int> choice,
                                           ArrayView<int> eligible, CapacityArgs a)
    {
        int r = Grid.GlobalIndex.X;
        if (r >= a.Tokens * a.K)
        {
            return;
        }
        int i = r / a.K, x = selected[r];
        float mine = Value(logits, weights, i, r, x, a);
        int ahead = 0;
        for (int other = 0; other < a.Tokens; other++)
        {
            int j = choice[(long)other * a.Experts + x];
            if (j < 0 || other == i)
            {
                continue;
            }
            float theirs = Value(logits, weights, other, other * a.K + j, x, a);
            if (theirs > mine || (theirs == mine && other < i))
            {
                ahead++;
            }
        }
        eligible[r] = ahead < a.Capacity ? 1 : 0;
    }

    /// <summary>Step 4, one group per expert x: the N·k positions of the priority order are cut into one contiguous
    /// segment per thread; each thread counts its segment's eligible requests to x, an inclusive prefix sum of the counts
    /// (Hillis-Steele, in shared memory, with barriers) gives each segment its first slot, and each thread walks its
    /// segment again numbering its requests from there: those numbered below C are kept with that slot.</summary>
    internal static void DispatchKernel(ArrayView<int> selected, ArrayView<int> eligible, ArrayView<int> tokenAtRank, ArrayView<float> weights,
                                        ArrayView<int> outExperts, ArrayView<float> outWeights, ArrayView<int> outSlots, ArrayView<int> load, CapacityArgs a)
    {
        int x = Grid.IdxX, t = Group.IdxX, threads = Group.DimX;
        int requests = a.Tokens * a.K;
        int segment = (requests + threads - 1) / threads;
        int lo = Math.Min(requests, t * segment), hi = Math.Min(requests, lo + segment);
        var scan = SharedMemory.GetDynamic<int>();

        int count = 0;
        for (int p = lo; p < hi; p++)
        {
            int r = RequestAt(p, tokenAtRank, a);
            if (selected[r] == x && eligible[r] != 0)
            {
                count++;
            }
        }
        scan[t] = count;
        Group.Barrier();
        for (int offset = 1; offset < threads; offset *= 2)          // Hillis-Steele inclusive scan of the counts
        {
            int add = t >= offset ? scan[t - offset] : 0;
            Group.Barrier();
            scan[t] += add;
            Group.Barrier();
        }
        int slot = scan[t] - count;                                  // exclusive prefix: requests to x in earlier segments
        for (int p = lo; p < hi; p++)
        {
            int r = RequestAt(p, tokenAtRank, a);
            if (selected[r] == x && eligible[r] != 0)
            {
                if (slot < a.Capacity)
                {
                    outExperts[r] = x;
                    outSlots[r] = slot;
                    outWeights[r] = weights[r];
                }
                slot++;
            }
        }
        if (t == threads - 1)
        {
            load[x] = Math.Min(scan[t], a.Capacity);
        }
    }

    /// <summary>Step 5 ("after"), one thread per token: log-space renormalization over the kept requests.</summary>
    internal static void AfterKernel(ArrayView<float> logits, ArrayView<int> outExperts, ArrayView<float> outWeights, CapacityArgs a)
    {
        int i = Grid.GlobalIndex.X;
        if (i < a.Tokens)
        {
            Renormalize(logits, outExperts, outWeights, i, a, keptOnly: true);
        }
    }

    /// <summary>The flat request at position p of the policy's priority order: (i, j) token-major for position, score and
    /// logit; (j, i) for choice-position; (j, token by rank) for batch-priority.</summary>
    private static int RequestAt(int p, ArrayView<int> tokenAtRank, CapacityArgs a)
    {
        switch ((DropPolicy)a.Policy)
        {
            case DropPolicy.ChoicePosition:
                return p % a.Tokens * a.K + p / a.Tokens;
            case DropPolicy.BatchPriority:
                return tokenAtRank[p % a.Tokens] * a.K + p / a.Tokens;
            default:
                return p;
        }
    }

    /// <summary>The selection key of expert x: its score plus its bias.</summary>
    private static float Key(ArrayView<float> scores, ArrayView<float> bias, long row, int x, CapacityArgs a) =>
        a.HasBias != 0 ? scores[row + x] + bias[x] : scores[row + x];

    /// <summary>The value a score or logit policy ranks request r (token i, expert x) by.</summary>
    private static float Value(ArrayView<float> logits, ArrayView<float> weights, int i, int r, int x, CapacityArgs a) =>
        (DropPolicy)a.Policy == DropPolicy.Score ? weights[r] : logits[(long)i * a.Experts + x];

    /// <summary>w_j = exp(l_j - max l) / sum over the token's (kept) requests, l = x (softmax) or log sigmoid(x).</summary>
    private static void Renormalize(ArrayView<float> logits, ArrayView<int> experts, ArrayView<float> weights, int i, CapacityArgs a, bool keptOnly)
    {
        long first = (long)i * a.K, row = (long)i * a.Experts;
        float max = float.NegativeInfinity;
        for (int j = 0; j < a.K; j++)
        {
            int x = experts[first + j];
            if (keptOnly && x < 0)
            {
                continue;
            }
            float v = logits[row + x];
            float l = a.Sigmoid != 0 ? LogSigmoid(v) : v;
            weights[first + j] = l;
            max = Math.Max(max, l);
        }
        float sum = 0f;
        for (int j = 0; j < a.K; j++)
        {
            if (keptOnly && experts[first + j] < 0)
            {
                continue;
            }
            float p = MathF.Exp(weights[first + j] - max);
            weights[first + j] = p;
            sum += p;
        }
        for (int j = 0; j < a.K; j++)
        {
            if (!keptOnly || experts[first + j] >= 0)
            {
                weights[first + j] /= sum;
            }
        }
    }

    /// <summary>log sigmoid(x) = -log(1 + exp(-x)), stable for large |x|.</summary>
    private static float LogSigmoid(float x) =>
        x >= 0 ? -MathF.Log(1f + MathF.Exp(-x)) : x - MathF.Log(1f + MathF.Exp(x));
}
