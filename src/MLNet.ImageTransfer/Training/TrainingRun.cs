using System.Diagnostics;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training.Callbacks;
using MLNet.ImageTransfer.Training.Checkpoints;
using MLNet.ImageTransfer.Training.Schedules;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// One call of <see cref="ClassifierTrainingLoop.Fit"/>: the state of a run and its steps, one method each — resume,
/// epoch, step, learning rate, end of epoch (callbacks, best weights, checkpoints). Everything a later epoch depends on
/// is either derived from (seed, epoch, step) or saved in the checkpoint, so a resumed run ends bit-identical (CPU).
/// </summary>
internal sealed class TrainingRun : IDisposable
{
    readonly ImageClassifierModel _model;
    readonly LabeledImageSet _train;
    readonly LabeledImageSet? _validation;
    readonly ImagePreprocessing _preprocessing;
    readonly TrainingOptions _options;
    readonly Device _device;
    readonly int _seed;
    readonly IReadOnlyList<LayerGroup> _groups;
    readonly FineTuningSchedule _fineTuning;
    readonly LearningRateSchedule? _schedule;
    readonly ClassificationLoss _loss;
    readonly IReadOnlyList<TrainingCallback> _callbacks;
    readonly TrainingControl _control = new();
    readonly CheckpointDirectory? _checkpoints;
    readonly BestWeights _best;
    readonly List<EpochSummary> _history = new();
    readonly List<string> _notes = new();
    readonly int _stepsPerEpoch;
    // How a batch becomes logits (Training/FeatureCache.cs): the whole network, or a frozen backbone's cached features.
    readonly FeatureCache _trainFeatures;
    readonly FeatureCache? _validationFeatures;

    // Both are set by EnterPhase before the first step of a run (or of a resumed epoch); null until then.
    optim.Optimizer? _optimizer;
    FineTuningPhase? _phase;
    double[] _groupFactors = [];
    double _learningRate;
    TrainingCheckpoint? _lastCheckpoint;

    public TrainingRun(ImageClassifierModel model, LabeledImageSet train, LabeledImageSet? validation, ImagePreprocessing preprocessing,
        TrainingOptions options, Device device, int seed)
    {
        options.Validate();
        if (train.Count == 0) throw new InvalidOperationException("The training set is empty.");
        _model = model; _train = train; _validation = validation; _preprocessing = preprocessing;
        _options = options; _device = device; _seed = seed;
        _groups = model.LayerGroups;
        _fineTuning = FineTuningSchedule.Create(_groups, options);
        _schedule = options.LearningRateSchedule;
        _callbacks = options.Callbacks.ToList();
        var classWeights = options.ClassWeights?.Resolve(train.Labels, model.NumClasses);
        _loss = new ClassificationLoss(classWeights, options.LabelSmoothing, device);
        _checkpoints = options.CheckpointDirectory is null ? null : new CheckpointDirectory(options.CheckpointDirectory);
        _best = new BestWeights(KeptMetric(options));
        _stepsPerEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
        _trainFeatures = FeatureCache.ForTraining(_fineTuning, options, train, model.StageCount);
        _validationFeatures = validation is null ? null : FeatureCache.ForValidation(_fineTuning, options, validation, model.StageCount);
        if ((_callbacks.OfType<EarlyStopping>().Any() || _schedule is ReduceOnPlateauSchedule) && validation is not { Count: > 0 })
            throw new InvalidOperationException("Early stopping and the plateau schedule watch validation metrics: give a validation set (ValidationSet / ValidationFraction, or --val / --val-split).");
    }

    /// <summary>The metric whose best epoch is kept: an <see cref="EarlyStopping"/> callback's when it restores best weights, else <see cref="TrainingOptions.KeepBestBy"/>.</summary>
    static MonitoredMetric? KeptMetric(TrainingOptions options)
    {
        var early = options.Callbacks.OfType<EarlyStopping>().FirstOrDefault();
        if (early is not null) return early.RestoreBestWeights ? early.Monitor : null;
        return options.KeepBestBy.ToMonitored();
    }

    public TrainingHistory Run()
    {
        try
        {
            _checkpoints?.EnsureWritable(); // fail now, not after the first epoch
            _schedule?.Reset();
            foreach (var c in _callbacks) c.OnTrainBegin(_control);
            var start = _options.Resume ? ResumeFromCheckpoint() : null;
            _checkpoints?.RemoveLeftovers();
            int firstEpoch = (start?.EpochsCompleted ?? 0) + 1;
            for (int epoch = firstEpoch; epoch <= _options.Epochs && !_control.StopRequested; epoch++)
            {
                bool resumingThisEpoch = start is not null && epoch == firstEpoch;
                RunEpoch(epoch, resumingThisEpoch ? start!.StepsIntoEpoch : 0,
                    resumingThisEpoch ? (start!.PartialLossSum, start.PartialCorrect) : (0, 0));
            }
            // A resumed run whose checkpoint is already at the end (or whose early stopping had fired) trains no epoch:
            // it ends as the original run did, with the same kept weights.
            int kept = _best.Restore(_model) ?? _history[^1].Epoch;
            var history = new TrainingHistory(_history.ToList(), kept)
            {
                Schedule = _fineTuning,
                StopReason = _control.StopReason,
                ResumedFrom = start?.ToString(),
                Notes = _notes.ToList(),
                LastCheckpoint = _lastCheckpoint?.Directory,
            };
            foreach (var c in _callbacks) c.OnTrainEnd(history);
            return history;
        }
        finally
        {
            foreach (var p in _model.parameters()) p.requires_grad = true;
            _model.eval();
        }
    }

    // ---- resume ------------------------------------------------------------------------------------------------

    /// <summary>Loads the newest valid checkpoint (weights, optimizer, RNG, history) and replays the history into the callbacks and schedule.</summary>
    TrainingCheckpoint? ResumeFromCheckpoint()
    {
        var checkpoints = _checkpoints ?? throw new InvalidOperationException("Resume needs CheckpointDirectory.");
        var checkpoint = checkpoints.Latest();
        _notes.AddRange(checkpoints.Problems.Select(p => "skipped " + p));
        if (checkpoint is null)
        {
            _notes.Add($"no checkpoint in '{checkpoints.Path}': started from scratch");
            return null;
        }
        string Mismatch(string what, object saved, object now) =>
            $"The checkpoint '{checkpoint.Directory}' was written by a run with {what} {saved}, this run has {now}. Resume with the same data and settings, or use another checkpoint folder.";
        if (checkpoint.Seed != _seed) throw new InvalidOperationException(Mismatch("seed", checkpoint.Seed, _seed));
        if (checkpoint.BatchSize != _options.BatchSize) throw new InvalidOperationException(Mismatch("batch size", checkpoint.BatchSize, _options.BatchSize));
        if (checkpoint.TrainingImages != _train.Count) throw new InvalidOperationException(Mismatch("training images:", checkpoint.TrainingImages, _train.Count));
        if (checkpoint.Classes != _model.NumClasses) throw new InvalidOperationException(Mismatch("classes:", checkpoint.Classes, _model.NumClasses));

        LoadWeights(_model, checkpoint.ModelPath!);
        _history.AddRange(checkpoint.History);
        if (checkpoint.KeptEpoch > 0 && _best.Metric is not null)
        {
            var best = checkpoints.Best(checkpoint.KeptEpoch);
            if (best is null) _notes.Add($"the best checkpoint of epoch {checkpoint.KeptEpoch} is missing: the best weights start over from the resumed epochs");
            else
            {
                using var scope = NewDisposeScope();
                using var file = Weights.SafeTensors.Read(best.ModelPath!);
                _best.Load(checkpoint.KeptEpoch, checkpoint.History.Single(e => e.Epoch == checkpoint.KeptEpoch), file.Tensors);
            }
        }
        foreach (var c in _callbacks) c.OnResume(checkpoint.History, _control);
        foreach (var e in checkpoint.History) _schedule?.OnEpochEnd(e);

        // The optimizer: rebuilt for the epoch we resume into; its saved state applies when that epoch is in the same
        // fine-tuning phase (the optimizer restarts at every phase switch, in an uninterrupted run too).
        int resumeEpoch = checkpoint.EpochsCompleted + 1;
        if (resumeEpoch <= _options.Epochs)
        {
            EnterPhase(_fineTuning.PhaseOf(resumeEpoch));
            if (Phase.FromEpoch == checkpoint.OptimizerPhaseFromEpoch && checkpoint.Files.ContainsKey(TrainingCheckpoint.OptimizerFileName))
            {
                if (checkpoint.Optimizer != Optimizer.GetType().Name)
                    throw new InvalidOperationException(Mismatch("optimizer", checkpoint.Optimizer ?? "none", Optimizer.GetType().Name));
                using var stream = File.OpenRead(Path.Combine(checkpoint.Directory!, TrainingCheckpoint.OptimizerFileName));
                using var reader = new BinaryReader(stream);
                StateOf(Optimizer).load_state_dict(reader);
            }
        }
        if (checkpoint.TorchRngState is { } rng)
        {
            using var state = tensor(Convert.FromBase64String(rng), ScalarType.Byte);
            torch.set_rng_state(state);
        }
        _lastCheckpoint = checkpoint;
        return checkpoint;
    }

    static void LoadWeights(ImageClassifierModel model, string path)
    {
        using var scope = NewDisposeScope();
        using var file = Weights.SafeTensors.Read(path);
        var state = model.state_dict();
        var missing = state.Keys.Where(k => !file.Tensors.ContainsKey(k)).ToList();
        if (missing.Count > 0 || file.Tensors.Count != state.Count)
            throw new InvalidOperationException($"The checkpoint '{path}' does not fit this model ({missing.Count} of its tensors are missing, e.g. {string.Join(", ", missing.Take(3))}). Resume with the same architecture.");
        using var _ = no_grad();
        foreach (var (key, t) in state) t.copy_(file.Tensors[key]);
    }

    // ---- one epoch -----------------------------------------------------------------------------------------------

    void RunEpoch(int epoch, int startStep, (double LossSum, long Correct) partial)
    {
        var phase = _fineTuning.PhaseOf(epoch);
        EnterPhase(phase);
        var stopwatch = Stopwatch.StartNew();
        _model.train();
        _fineTuning.ApplyBatchNormFreezing(_groups, phase);

        var order = EpochSampling.Order(_train.Labels, _seed, epoch, _options.BalancedSampling);
        // Augmentation (training only) runs on background workers, a few batches ahead; seeded per (seed, epoch, batch).
        // Once the feature cache holds every row, the images are not read at all.
        int backboneBatchesBefore = _trainFeatures.BackboneBatches;
        using var batches = _trainFeatures.NeedsImages(phase)
            ? Augmentation.EpochBatches.Create(_train, order, _options.BatchSize, _options.AugmentsPhase(phase) ? _options.Augmentation : null, _preprocessing, _seed, epoch)
            : null;
        for (int skipped = 0; batches is not null && skipped < startStep; skipped++)
        {
            using var scope = NewDisposeScope();
            batches.Next(); // a resumed epoch: these batches were trained on before the interruption
        }
        double lossSum = partial.LossSum; long correct = partial.Correct;
        for (int step = startStep; step < _stepsPerEpoch; step++)
        {
            if (_options.Cancellation.IsCancellationRequested) Interrupt(epoch, step, lossSum, correct);
            int rows = Math.Min(_options.BatchSize, order.Length - step * _options.BatchSize);
            var (loss, hits) = TrainStep(batches, order.AsSpan(step * _options.BatchSize, rows), epoch, step);
            lossSum += loss * rows;
            correct += hits;
            int seen = Math.Min((step + 1) * _options.BatchSize, order.Length);
            var progress = new StepProgress(epoch, _options.Epochs, step + 1, _stepsPerEpoch, lossSum / seen, (double)correct / seen)
            {
                LearningRate = _learningRate,
                Elapsed = stopwatch.Elapsed,
                StepsTimed = step + 1 - startStep,
            };
            foreach (var c in _callbacks) c.OnStepEnd(progress, _control);
            _options.StepCompleted?.Invoke(progress);
        }
        EndEpoch(epoch, phase, stopwatch.Elapsed, lossSum / order.Length, (double)correct / order.Length, _trainFeatures.BackboneBatches - backboneBatchesBefore);
    }

    /// <summary>The current phase's optimizer: steps only run after <see cref="EnterPhase"/> has created it.</summary>
    optim.Optimizer Optimizer => _optimizer ?? throw new InvalidOperationException("No fine-tuning phase entered: the optimizer does not exist yet.");

    /// <summary>The current fine-tuning phase, set by <see cref="EnterPhase"/>.</summary>
    FineTuningPhase Phase => _phase ?? throw new InvalidOperationException("No fine-tuning phase entered yet.");

    /// <summary>Rebuilds the optimizer when the fine-tuning phase changes (freezing = no gradients for frozen groups).</summary>
    void EnterPhase(FineTuningPhase phase)
    {
        if (ReferenceEquals(_phase, phase)) return;
        if (_phase is not null)
        {
            _trainFeatures.PhaseFinished(_phase);
            _validationFeatures?.PhaseFinished(_phase);
        }
        FineTuningSchedule.ApplyFreezing(_model, _groups, phase);
        _optimizer?.Dispose();
        _optimizer = FineTuningSchedule.CreateOptimizer(_model, _groups, phase, _options);
        // Each parameter group's rate relative to the head's: a schedule scales them all alike.
        _groupFactors = _optimizer.ParamGroups.Select(g => g.LearningRate / phase.HeadLearningRate).ToArray();
        _phase = phase;
    }

    /// <returns>The batch's mean loss and its correct predictions.</returns>
    (double Loss, long Correct) TrainStep(Augmentation.EpochBatches? batches, ReadOnlySpan<int> rows, int epoch, int step)
    {
        SetLearningRate(epoch, step);
        using var scope = NewDisposeScope();
        ClearGradients();
        bool batchRead = false;
        var (logits, y) = _trainFeatures.Forward(_model, _phase, rows, () => { batchRead = true; return batches!.Next(); }, _train.Labels, _preprocessing, _device);
        // Keep the batch stream in step order when cached rows skipped it (a partly filled cache after a resume).
        if (!batchRead && batches is not null) batches.Next();
        var loss = _loss.Compute(logits, y);
        float lossValue = loss.item<float>();
        if (!float.IsFinite(lossValue)) Diverged(epoch, step, lossValue);
        loss.backward();
        if (_options.GradientClipNorm is double maxNorm)
            nn.utils.clip_grad_norm_(_model.parameters().Where(p => p.requires_grad), maxNorm);
        Optimizer.step();
        return (lossValue, logits.argmax(1).eq(y).sum().item<long>());
    }

    /// <summary>
    /// PyTorch 2's <c>zero_grad(set_to_none=True)</c>: gradients are dropped rather than zeroed; backward allocates
    /// them afresh and the optimizers skip parameters that got none. Not TorchSharp's <c>zero_grad()</c>: it zeroes
    /// through <c>Tensor.shape</c>, which leaves a finalizable pinned array and a marshalled delegate per parameter
    /// per step for the GC, native memory that piles up between collections (measured with heaptrack).
    /// </summary>
    void ClearGradients()
    {
        foreach (var parameter in Optimizer.parameters())
            parameter.grad = null;
    }

    void SetLearningRate(int epoch, int step)
    {
        _learningRate = _schedule?.LearningRate(new SchedulePosition(epoch, step, _stepsPerEpoch, _options.Epochs, Phase.HeadLearningRate))
                        ?? Phase.HeadLearningRate;
        int i = 0;
        foreach (var group in Optimizer.ParamGroups) group.LearningRate = _learningRate * _groupFactors[i++];
    }

    void Diverged(int epoch, int step, float lossValue)
    {
        var kept = _lastCheckpoint?.Directory is { } dir ? $" The last good checkpoint is '{dir}' ({_lastCheckpoint}); nothing was written after it." : "";
        throw new TrainingDivergedException(
            $"Training diverged: the loss became {lossValue} at epoch {epoch}, step {step + 1}. Lower the learning rate (now {_learningRate:G4}), or clip gradients (GradientClipNorm / --clip-grad-norm).{kept}",
            epoch, step + 1, _lastCheckpoint?.Directory);
    }

    // ---- end of epoch --------------------------------------------------------------------------------------------

    void EndEpoch(int epoch, FineTuningPhase phase, TimeSpan duration, double trainLoss, double trainAccuracy, int backboneBatches)
    {
        double? valLoss = null, valAccuracy = null;
        if (_validation is { Count: > 0 })
            (valLoss, valAccuracy) = ClassifierTrainingLoop.Evaluate(_model, _validation, _preprocessing, _options.BatchSize, _device, _validationFeatures, phase);
        var summary = new EpochSummary(epoch, _options.Epochs, phase.HeadOnly ? TrainingPhase.Frozen : TrainingPhase.FineTune, _stepsPerEpoch,
            duration, _learningRate, trainLoss, trainAccuracy, valLoss, valAccuracy, IsBest: false) { BackboneBatches = backboneBatches };
        summary = summary with { IsBest = _best.Offer(_model, summary) };
        _history.Add(summary);
        foreach (var c in _callbacks) c.OnEpochEnd(summary, _control);
        _schedule?.OnEpochEnd(summary);
        if (_checkpoints is not null)
        {
            if (summary.IsBest) WriteBestCheckpoint(epoch);
            _lastCheckpoint = WriteCheckpoint(epoch, 0, 0, 0);
            _checkpoints.Prune();
        }
        _options.EpochCompleted?.Invoke(summary);
    }

    // ---- checkpoints ---------------------------------------------------------------------------------------------

    TrainingCheckpoint WriteCheckpoint(int epochsCompleted, int stepsIntoEpoch, double partialLossSum, long partialCorrect)
    {
        using var rng = torch.get_rng_state();
        var manifest = NewManifest(CheckpointDirectory.LastKind, epochsCompleted) with
        {
            StepsIntoEpoch = stepsIntoEpoch,
            PartialLossSum = partialLossSum,
            PartialCorrect = partialCorrect,
            Optimizer = _optimizer?.GetType().Name,
            OptimizerPhaseFromEpoch = _phase?.FromEpoch ?? 0,
            TorchRngState = Convert.ToBase64String(rng.bytes),
        };
        var files = new List<(string, Action<Stream>)> { (TrainingCheckpoint.ModelFileName, (Stream s) => WriteModel(s, _model)) };
        if (_optimizer is not null)
            files.Add((TrainingCheckpoint.OptimizerFileName, (Stream s) =>
            {
                using var writer = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
                StateOf(_optimizer).save_state_dict(writer);
                writer.Flush();
            }));
        return _checkpoints!.Write(manifest, files);
    }

    void WriteBestCheckpoint(int epoch)
        => _checkpoints!.Write(NewManifest(CheckpointDirectory.BestKind, epoch), [(TrainingCheckpoint.ModelFileName, s => WriteModel(s, _model))]);

    TrainingCheckpoint NewManifest(string kind, int epochsCompleted) => new()
    {
        Kind = kind,
        EpochsCompleted = epochsCompleted,
        Seed = _seed,
        BatchSize = _options.BatchSize,
        TrainingImages = _train.Count,
        Classes = _model.NumClasses,
        History = _history.ToList(),
        KeptEpoch = _best.Epoch ?? 0,
        Files = new Dictionary<string, CheckpointFile>(),
    };

    /// <summary>TorchSharp's optimizers keep save/load of their state on OptimizerHelper (Adam, AdamW and SGD all derive from it).</summary>
    static TorchSharp.Modules.OptimizerHelper StateOf(optim.Optimizer optimizer) => optimizer as TorchSharp.Modules.OptimizerHelper
        ?? throw new NotSupportedException($"The optimizer {optimizer.GetType().Name} cannot save its state.");

    static void WriteModel(Stream stream, ImageClassifierModel model)
        => Weights.SafeTensors.Write(stream, model.state_dict().Select(kv => (kv.Key, kv.Value)),
            new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "MLNet.ImageTransfer checkpoint" });

    /// <summary>Ctrl+C / cancellation between steps: the finished steps are saved, then the run ends.</summary>
    void Interrupt(int epoch, int step, double lossSum, long correct)
    {
        TrainingCheckpoint? written = null;
        if (_checkpoints is not null)
            written = step == 0 && _lastCheckpoint is { StepsIntoEpoch: 0 } last && last.EpochsCompleted == epoch - 1
                ? _lastCheckpoint
                : WriteCheckpoint(epoch - 1, step, lossSum, correct);
        throw new TrainingInterruptedException(epoch, step, written?.Directory, _options.Cancellation);
    }

    public void Dispose()
    {
        _optimizer?.Dispose();
        _loss.Dispose();
        _best.Dispose();
        _trainFeatures.Dispose();
        _validationFeatures?.Dispose();
    }
}
