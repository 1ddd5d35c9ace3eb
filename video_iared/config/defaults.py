"""The default configuration: every key the code reads, each with a one-line comment.

Key names follow TimeSformer / PySlowFast wherever those projects have one, so their YAML files and
command lines carry over. Keys for what TimeSformer hard-codes (embedding width, depth, ...) are new.
"""
from fvcore.common.config import CfgNode

_C = CfgNode()

# ----------------------------------------------------------------------------- top level
_C.NUM_GPUS = 1  # GPUs per machine to use; 0 forces the CPU (the device is chosen by DEVICE)
_C.DEVICE = "auto"  # "auto" (cuda if available and NUM_GPUS > 0, else cpu) | "cpu" | "cuda"
_C.DIST_BACKEND = "auto"  # torch.distributed backend under torchrun: "auto" (nccl on cuda, gloo on cpu) | "gloo" | "nccl"
_C.CUDA_TF32 = True  # on cuda: float32 matmuls and convolutions in TF32 (Ampere and later); False: full float32
_C.OUTPUT_DIR = "./output"  # where logs, checkpoints, stats.jsonl and predictions go
_C.RNG_SEED = 0  # seed for python, numpy and torch
_C.LOG_PERIOD = 10  # iterations between training log lines
_C.LOG_MODEL_INFO = True  # log parameter count and fvcore GFLOPs when the model is built
_C.NUM_THREADS = 0  # torch intra-op threads on CPU; 0 keeps torch's default

# ----------------------------------------------------------------------------- TRAIN
_C.TRAIN = CfgNode()
_C.TRAIN.ENABLE = True  # run the training stage
_C.TRAIN.DATASET = "kinetics"  # dataset adapter for training: "kinetics" | "ssv2" | "ucf101" | "hmdb51" (list files as kinetics)
_C.TRAIN.BATCH_SIZE = 8  # clips per optimizer step, summed over all processes
_C.TRAIN.EVAL_PERIOD = 1  # epochs between clip-level validation runs (0 disables)
_C.TRAIN.CHECKPOINT_PERIOD = 1  # epochs between checkpoints
_C.TRAIN.AUTO_RESUME = True  # resume from the latest checkpoint in OUTPUT_DIR/checkpoints
_C.TRAIN.CHECKPOINT_FILE_PATH = ""  # weights to start from (official .pyth, ours, or timm image weights)
# (the synthetic bench starts from the demo's dense model, as TimeSformer starts from ImageNet weights)
_C.TRAIN.PRETRAIN_CONFIG = ""  # dense config whose trained model starts dense training when CHECKPOINT_FILE_PATH is "" (trained first by run_net, reused once complete)
_C.TRAIN.MIXED_PRECISION = False  # autocast in training: fp16 + GradScaler on cuda, bf16 on cpu (TRAIN.AMP_DTYPE)
_C.TRAIN.AMP_DTYPE = "auto"  # with MIXED_PRECISION: "auto" (fp16 on cuda, bf16 on cpu) | "bf16" | "fp16" (cuda only)
_C.TRAIN.GRAD_ACCUM_STEPS = 1  # micro-batches accumulated per optimizer step
_C.TRAIN.CLIP_GRAD_NORM = 0.0  # max global gradient norm; 0 disables clipping
_C.TRAIN.LABEL_SMOOTHING = 0.0  # label smoothing of the cross-entropy loss

# ----------------------------------------------------------------------------- DATA
_C.DATA = CfgNode()
_C.DATA.PATH_TO_DATA_DIR = ""  # folder holding the {train,val,test}.csv list files (or the SSv2 json files)
_C.DATA.PATH_PREFIX = ""  # prefix joined to every video path of the list files
_C.DATA.PATH_LABEL_SEPARATOR = " "  # separator between path and label in the list files
_C.DATA.NUM_FRAMES = 8  # frames per clip
_C.DATA.SAMPLING_RATE = 32  # frame stride of dense sampling (Kinetics)
_C.DATA.TARGET_FPS = 0.0  # dense sampling: clip span scaled by video fps / TARGET_FPS (PySlowFast: 30); 0 = SAMPLING_RATE in file frames
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]  # range of the random short-side scale in training
_C.DATA.TRAIN_CROP_SIZE = 224  # square crop size in training
_C.DATA.TEST_CROP_SIZE = 224  # square crop size (and short-side scale) in testing
_C.DATA.MEAN = [0.45, 0.45, 0.45]  # per-channel mean for normalisation (0-1 pixel scale)
_C.DATA.STD = [0.225, 0.225, 0.225]  # per-channel std for normalisation
_C.DATA.NORMALIZE_ON_DEVICE = True  # datasets return uint8 clips, normalised on the model's device (4x fewer bytes from the workers); False: float32 from the workers
_C.DATA.INPUT_CHANNEL_NUM = [3]  # channels of the input clips (PySlowFast's per-pathway list)
_C.DATA.DECODING_BACKEND = "pyav"  # video reader: "pyav" | "decord" | "torchcodec" (decodes on the GPU when the run is on CUDA with NUM_WORKERS 0)
_C.DATA.PIPELINE = "ours"  # "ours" | "pytorchvideo": decode through pytorchvideo's EncodedVideo (DECODING_BACKEND pyav / decord) in our datasets
_C.DATA.RANDOM_FLIP = True  # horizontal flip in training, where the dataset allows it (never for ssv2)
_C.DATA.MAX_BAD_FRACTION = 0.05  # fraction of undecodable training videos above which the run stops
_C.DATA.DECODE_TIMEOUT = 60.0  # seconds one video may take to decode before it counts as failed
_C.DATA.CHECK_FILES = True  # check at dataset build time that every listed video exists

# ----------------------------------------------------------------------------- SYNTHETIC
_C.SYNTHETIC = CfgNode()
_C.SYNTHETIC.ENABLE = False  # generate the synthetic benchmark into DATA.PATH_TO_DATA_DIR when missing
_C.SYNTHETIC.NUM_CLASSES = 8  # number of motion classes (at most the generator's class count)
_C.SYNTHETIC.VIDEOS_PER_CLASS = [24, 6, 10]  # videos per class in train, val, test
_C.SYNTHETIC.NUM_FRAMES = 32  # frames per generated video
_C.SYNTHETIC.SIZE = [64, 64]  # generated frame height, width
_C.SYNTHETIC.FPS = 16  # frame rate written into the files
_C.SYNTHETIC.SEED = 0  # generator seed: same seed, same videos
_C.SYNTHETIC.FORMAT = "kinetics"  # layout written: "kinetics" (mp4 + csv lists) | "ssv2" (webm + json)
_C.SYNTHETIC.DISTRACTORS = [0, 0]  # [lo, hi] class-like distractors per video (single-tone, moving like a class)
_C.SYNTHETIC.CAMERA_PAN = 0.0  # camera travel over a video, fraction of min(H, W) (0 = still camera)
_C.SYNTHETIC.CAMERA_ZOOM = 0.0  # camera zoom changes by a factor of up to 1 + this over a video, in or out
_C.SYNTHETIC.OCCLUDERS = 0  # bars passing in front of the target per video (the mask leaves them out)
_C.SYNTHETIC.BACKGROUND = "smooth"  # "smooth" (muted noise) | "textured" (procedural patterns at several scales)
_C.SYNTHETIC.DISTRACTOR_SCALE = 1.0  # class-like distractors' linear size relative to the target's size range, (0, 1]
_C.SYNTHETIC.TARGET_TONE = "pastel"  # the target's second tone: "pastel" (light, same hue) | "dark" (same hue, dark)

# ----------------------------------------------------------------------------- DATA_LOADER
_C.DATA_LOADER = CfgNode()
_C.DATA_LOADER.NUM_WORKERS = 2  # loader worker processes per training/testing process
_C.DATA_LOADER.PIN_MEMORY = True  # pin host memory (only used on cuda)

# ----------------------------------------------------------------------------- MODEL
_C.MODEL = CfgNode()
_C.MODEL.MODEL_NAME = "vit_base_patch16_224"  # model name as in TimeSformer (the ViT variant)
_C.MODEL.ARCH = "vit"  # architecture family; only "vit" (TimeSformer) is built here
_C.MODEL.NUM_CLASSES = 400  # classifier outputs
_C.MODEL.DROPOUT_RATE = 0.0  # dropout before the head and in the MLPs
_C.MODEL.DROPPATH_RATE = 0.1  # stochastic depth at the last block (linearly increasing from 0)

# ----------------------------------------------------------------------------- TIMESFORMER
_C.TIMESFORMER = CfgNode()
_C.TIMESFORMER.ATTENTION_TYPE = "divided_space_time"  # "divided_space_time" | "joint_space_time" | "space_only"
_C.TIMESFORMER.PRETRAINED_MODEL = ""  # image (timm ViT/DeiT) weights to inflate: a .pth/.safetensors path or a cached timm name
_C.TIMESFORMER.EMBED_DIM = 768  # token width
_C.TIMESFORMER.DEPTH = 12  # number of transformer blocks
_C.TIMESFORMER.NUM_HEADS = 12  # attention heads
_C.TIMESFORMER.PATCH_SIZE = 16  # square patch size in pixels
_C.TIMESFORMER.MLP_RATIO = 4.0  # MLP hidden width / token width
_C.TIMESFORMER.STEM = "patch"  # token embedding: "patch" (the reference's linear patches) | "conv3d" (models/conv_stem.py, for training from scratch)
_C.TIMESFORMER.STEM_CHANNELS = 16  # conv3d stem: channels between its two convolutions
_C.TIMESFORMER.TIME_EMBED_INIT_STD = 0.0  # std of time_embed's initialisation; 0 = zeros, as the reference

# ----------------------------------------------------------------------------- IARED
_C.IARED = CfgNode()
_C.IARED.ENABLE = False  # build the IA-RED² model (interpreters in front of block groups)
_C.IARED.GROUPS = [4, 4, 4]  # blocks per group; sums to TIMESFORMER.DEPTH
_C.IARED.NUM_HEADS = 6  # interpreter heads
_C.IARED.HEAD_DIM = 64  # interpreter query/key width per head
_C.IARED.INIT_KEEP_PROB = 0.5  # every token's keep probability at the interpreters' initialisation (0.5: zero biases)
_C.IARED.THRESHOLD = 0.5  # inference: keep a token when its keep probability exceeds this
_C.IARED.MODE = "threshold"  # inference policy: "threshold" | "keep_ratio" (fixed top-k budget per group)
# After the curriculum (and again after the finetune) raise IARED.THRESHOLD until the mean fvcore cost per val clip
# is at most TARGET_COST of the dense model's (0.5: 2x fewer GFLOPs); the checkpoint keeps the calibrated threshold
# and the predict / test stages use it (pruning/calibrate.py). In keep_ratio mode the keep ratio is set instead:
# the largest one, the same in every group, whose GFLOPs per clip are within TARGET_COST (IARED.KEEP_RATIO unused).
_C.IARED.TARGET_COST = 0.0  # cost budget as a fraction of dense GFLOPs; 0 = no calibration (use IARED.THRESHOLD)
_C.IARED.CALIBRATION_VIDEOS = 256  # val videos the calibration measures (evenly spaced over the list); 0 = all
# (the budget as an operating point: the model keeps as many tokens as it pays for)
_C.IARED.CALIBRATION_FILL = False  # with TARGET_COST: also lower the threshold of a model under budget, to the lowest one within it (False: only raised)
_C.IARED.CALIBRATION_PER_GROUP = False  # with TARGET_COST: one threshold per group, each group keeping the same fraction of its alive val tokens, that fraction bisected to the budget (pruning/calibrate.py; CALIBRATION_FILL then has no effect)
_C.IARED.CALIBRATION_FVCORE_CLIPS = 1  # val clips also traced by fvcore at the first point, logged beside the trace-free count (0 = none)
_C.IARED.KEEP_RATIO = [0.7, 0.7, 0.7]  # keep_ratio mode: fraction of the alive tokens kept at each group
_C.IARED.EXECUTION = "packed"  # "packed" (kept tokens only) | "masked" (full grid, reference path)
# packed execution's attention: "auto" (cuda: varlen; cpu: bucketed, the faster there) | "varlen" (one variable-length call
# per branch over the batch, no host read in keep_ratio mode; flash varlen_attn on cuda in fp16/bf16) | "bucketed"
_C.IARED.ATTENTION_BACKEND = "auto"  # see the README's "Attention backends"
_C.IARED.TAU = 0.5  # reward penalty for a wrong prediction (R = -TAU)
_C.IARED.BASELINE = "mean"  # REINFORCE baseline: "none" | "mean" (batch mean) | "greedy" (self-critical)
_C.IARED.CURRICULUM_EPOCHS = 2  # epochs per curriculum step (one step per group)
_C.IARED.FINETUNE_EPOCHS = 0  # epochs of backbone finetuning with the interpreters fixed
_C.IARED.BASE_LR = 1e-3  # learning rate of the interpreters during the curriculum
_C.IARED.FINETUNE_LR = 1e-4  # learning rate of the backbone finetuning (cosine to 0 over IARED.FINETUNE_EPOCHS)
_C.IARED.FINETUNE_DISTILL = 0.0  # finetune loss += this x KL(dense teacher || pruned student) (pruning/distill.py); 0 = CE only
_C.IARED.DISTILL_TEMPERATURE = 1.0  # softmax temperature of that distillation term
_C.IARED.DENSE_CHECKPOINT = ""  # the trained dense model the curriculum starts from ("" = train it first)
_C.IARED.DENSE_PLUS_N = True  # also train and test "dense + N": the dense model given IA-RED²'s finetune (OUTPUT_DIR/dense_plus_n)

# ----------------------------------------------------------------------------- SOLVER
_C.SOLVER = CfgNode()
_C.SOLVER.OPTIMIZING_METHOD = "sgd"  # "sgd" | "adamw"
_C.SOLVER.BASE_LR = 0.005  # peak learning rate (for TRAIN.BATCH_SIZE clips per step)
_C.SOLVER.LR_POLICY = "steps_with_relative_lrs"  # "cosine" | "steps_with_relative_lrs"
_C.SOLVER.STEPS = [0, 11, 14]  # epochs where a step schedule changes the learning rate
_C.SOLVER.LRS = [1, 0.1, 0.01]  # relative learning rates of the step schedule
_C.SOLVER.COSINE_END_LR = 0.0  # final learning rate of the cosine schedule
_C.SOLVER.MAX_EPOCH = 15  # training epochs
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.NESTEROV = True  # SGD Nesterov momentum
_C.SOLVER.WEIGHT_DECAY = 1e-4  # weight decay (never applied to norms, biases, position/time embeddings)
_C.SOLVER.WARMUP_EPOCHS = 0.0  # linear warm-up length in epochs
_C.SOLVER.WARMUP_START_LR = 0.0  # learning rate at the start of warm-up

# ----------------------------------------------------------------------------- TEST
_C.TEST = CfgNode()
_C.TEST.ENABLE = True  # run multi-view evaluation after training
_C.TEST.DATASET = "kinetics"  # dataset adapter for testing: "kinetics" | "ssv2" | "ucf101" | "hmdb51" (list files as kinetics)
_C.TEST.SPLIT = "test"  # list file evaluated: "val" | "test"
_C.TEST.BATCH_SIZE = 8  # videos decoded per test batch (all their views are run)
_C.TEST.NUM_ENSEMBLE_VIEWS = 1  # temporal clips per video
_C.TEST.NUM_SPATIAL_CROPS = 3  # spatial crops per clip
_C.TEST.VIEWS_PER_CHUNK = 16  # views run through the model at once
_C.TEST.ENSEMBLE_METHOD = "mean_softmax"  # "mean_softmax" | "sum_logits" | "max"
_C.TEST.CHECKPOINT_FILE_PATH = ""  # weights to evaluate ("" = the last trained checkpoint)
_C.TEST.SAVE_RESULTS_PATH = "predictions"  # stem of the predictions files in OUTPUT_DIR (.csv and .pt)
_C.TEST.SAVE_VIEW_LOGITS = False  # also store every view's logits in the .pt file
_C.TEST.PRECISION = "fp32"  # forward precision: "fp32" | "bf16" | "fp16" (fp16 on cuda only)
_C.TEST.COMPILE = False  # torch.compile the model for testing, prediction and the speed benchmark (utils.precision.maybe_compile)
_C.TEST.VIEW_SWEEP = False  # also report accuracy for fewer clips/crops from the same decodes
_C.TEST.FVCORE_SAMPLE_CLIPS = 4  # IA-RED²: views also traced by fvcore, logged beside the trace-free count (0 = none)

# ----------------------------------------------------------------------------- PREDICT
_C.PREDICT = CfgNode()
_C.PREDICT.ENABLE = False  # run batch clip inference on PREDICT.INPUT
_C.PREDICT.INPUT = ""  # a folder, a glob or a list file of videos
_C.PREDICT.OUTPUT = "predict.csv"  # output file in OUTPUT_DIR (.csv or .json)
_C.PREDICT.TOP_K = 5  # labels written per video
_C.PREDICT.CLASS_NAMES = ""  # json or text file of class names ("" = the dataset's, if known)

# ----------------------------------------------------------------------------- BENCHMARK
_C.BENCHMARK = CfgNode()
_C.BENCHMARK.TYPE = ""  # run a benchmark stage instead of train/test: "" | "loader" | "speed"
_C.BENCHMARK.NUM_ITERS = 20  # measured iterations
_C.BENCHMARK.WARMUP_ITERS = 3  # iterations run before measuring


# ----------------------------------------------------------------------------- INTERP
_C.INTERP = CfgNode()
_C.INTERP.METHODS = ["interpreter", "interpreter_g0", "kept", "attention", "rollout", "gradcam", "chefer", "random"]  # token maps compared by tools/eval_interpretability.py
_C.INTERP.FG_FRACTION = 0.5  # a patch counts as foreground when at least this fraction of its pixels is
_C.INTERP.TOPK = 0.1  # fraction of the tokens (highest scores) whose IoU with the foreground is reported
_C.INTERP.CURVE_STEPS = 10  # deletion/insertion curves at 0, 1/STEPS, ..., 1 of the tokens (0 = no curves)
_C.INTERP.CURVE_VIEWS = 1  # deletion/insertion curves on the first n views of each video (they cost forwards)
_C.INTERP.MAX_VIDEOS = 0  # evaluate the first n videos of TEST.SPLIT (0 = all)
_C.INTERP.TARGET = "pred"  # class explained by the gradient methods: "pred" (dense prediction) | "label"

def get_defaults() -> CfgNode:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
