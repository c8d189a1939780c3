import Foundation

/// The epoch loop's learning-rate schedule and early stopping, decided from
/// the validation AUC after every epoch (README "How a run goes").
///
/// Every epoch trains at `lr_decay^level` times the configured rates
/// (epoch 1 also warms up). After an epoch:
/// - a validation AUC above the best so far by at least `min_improvement`
///   keeps the rate: the model is still learning at it;
/// - a smaller gain is a plateau: the epoch becomes the best and the rate
///   decays for the next one;
/// - no gain for `patience` epochs: the servers go back to the best epoch's
///   model (weights, Adam moments and row steps: `Snapshot`) and the rate
///   decays, so the next epoch refines the best model instead of the one
///   that overfitted;
/// - a plateau when the rate has already decayed `lr_decays` times, or
///   `epochs` epochs trained, stops; the servers are left holding the best
///   epoch's model.
///
/// One pass gets close on a large log (the rate decays after epoch 2 went
/// back to epoch 1); a small log keeps its full rate for as many epochs as
/// the validation AUC keeps rising. Without a validation split every epoch
/// counts as a plateau: the rate decays after each one, `lr_decays + 1`
/// epochs in all.
///
/// The state lives in the coordinator's journal (docs/COORDINATOR.md), which
/// hands each worker its epoch's decay level with every lease.
public struct LearningRateSchedule: Codable, Sendable, Equatable {
    /// The servers' snapshot that holds the best epoch's model.
    public static let bestSnapshot = "best"

    public struct Settings: Sendable, Equatable {
        public var decay: Double
        public var maxDecays: Int
        public var patience: Int
        public var maxEpochs: Int
        public var minImprovement: Double

        public init(_ t: ClusterConfig.Training) {
            decay = t.lrDecay
            maxDecays = t.lrDecays
            patience = t.patience
            maxEpochs = t.epochs
            minImprovement = t.minImprovement
        }

        public init(decay: Double, maxDecays: Int, patience: Int, maxEpochs: Int, minImprovement: Double) {
            self.decay = decay
            self.maxDecays = maxDecays
            self.patience = patience
            self.maxEpochs = maxEpochs
            self.minImprovement = minImprovement
        }
    }

    public enum Action: String, Codable, Sendable {
        /// Improved clearly: the next epoch at the same rate.
        case keep
        /// Not improved, patience left: the next epoch at the same rate, from this model.
        case wait
        /// A small gain (a new best): the rate decays.
        case decay
        /// No gain: back to the best epoch's model, and the rate decays.
        case rollbackDecay = "rollback-decay"
        /// Done: the servers hold the best epoch's model.
        case stop
    }

    /// What happened after one epoch.
    public struct EpochRecord: Codable, Sendable, Equatable {
        public var epoch: Int
        /// The decay level this epoch trained at (rate = lr_decay^level).
        public var level: Int
        public var lrScale: Double
        public var validAUC: Double?
        public var action: Action
        /// The servers went back to this epoch's model after it (nil: they kept this one).
        public var restoredEpoch: Int?

        enum CodingKeys: String, CodingKey {
            case epoch, level, action
            case lrScale = "lr_scale", validAUC = "valid_auc", restoredEpoch = "restored_epoch"
        }
    }

    /// What the epoch loop must do now.
    public struct Decision: Sendable, Equatable {
        public var action: Action
        /// Keep this epoch's model as the best (`Snapshot` save).
        public var saveBest: Bool
        /// Go back to the best epoch's model (`Snapshot` restore).
        public var restoreBest: Bool
        public var stop: Bool { action == .stop }
    }

    /// The level the next epoch trains at.
    public private(set) var level = 0
    public private(set) var bestEpoch: Int?
    public private(set) var bestAUC: Double?
    /// Epochs since the best one (at the current level).
    public private(set) var sinceBest = 0
    public private(set) var epochs: [EpochRecord] = []

    public init() {}

    enum CodingKeys: String, CodingKey {
        case level, epochs
        case bestEpoch = "best_epoch", bestAUC = "best_valid_auc", sinceBest = "since_best"
    }

    public var stopped: Bool { epochs.last?.action == .stop }
    /// The epoch the next call of `record` expects.
    public var nextEpoch: Int { epochs.count + 1 }

    /// The decay level epoch `epoch` trains (or trained) at.
    public func level(ofEpoch epoch: Int) -> Int {
        epoch >= 1 && epoch <= epochs.count ? epochs[epoch - 1].level : level
    }

    public static func scale(level: Int, decay: Double) -> Double { pow(decay, Double(level)) }

    /// Records epoch `epoch` (which must be `nextEpoch`) with its validation
    /// AUC (nil without a validation split) and decides what comes next.
    public mutating func record(epoch: Int, validAUC: Double?, settings s: Settings) -> Decision {
        precondition(epoch == nextEpoch && !stopped, "epoch \(epoch) recorded out of order (expected \(nextEpoch))")
        let trainedAt = level
        let improved: Bool, clearly: Bool
        switch (validAUC, bestAUC) {
        case (nil, _): (improved, clearly) = (true, false)
        case (_?, nil): (improved, clearly) = (true, true)
        case (let v?, let b?): (improved, clearly) = (v > b, v - b >= s.minImprovement)
        }
        if improved {
            bestEpoch = epoch
            bestAUC = validAUC
            sinceBest = 0
        } else {
            sinceBest += 1
        }
        var action: Action
        if improved && clearly {
            action = .keep
        } else if !improved && sinceBest < s.patience {
            action = .wait
        } else if level < s.maxDecays {
            action = improved ? .decay : .rollbackDecay
            level += 1
            sinceBest = 0
        } else {
            action = .stop
        }
        if epoch >= s.maxEpochs { action = .stop }
        let restore = bestEpoch != epoch && (action == .stop || action == .rollbackDecay)
        epochs.append(EpochRecord(epoch: epoch, level: trainedAt, lrScale: Self.scale(level: trainedAt, decay: s.decay),
                                  validAUC: validAUC, action: action, restoredEpoch: restore ? bestEpoch : nil))
        return Decision(action: action, saveBest: improved, restoreBest: restore)
    }
}
