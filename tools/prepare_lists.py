#!/usr/bin/env python
"""Build list files from the official annotations.

    python tools/prepare_lists.py k400 --annotations DIR --videos DIR [--out data_lists/k400]
    python tools/prepare_lists.py ssv2 --annotations DIR --videos DIR [--out data_lists/ssv2]
    python tools/prepare_lists.py ucf101 --annotations ucfTrainTestlist --videos UCF-101 [--splits 1 2 3]
    python tools/prepare_lists.py hmdb51 --annotations testTrainMulti_7030_splits --videos hmdb51 [--splits 1 2 3]

k400: DIR holds the official train.csv / validate.csv / test.csv (label,youtube_id,time_start,time_end,split);
videos are found by name (<youtube_id>_<start:06d>_<end:06d>.mp4) anywhere below --videos. ssv2: DIR holds
something-something-v2-{labels,train,validation[,test]}.json; videos are <id>.webm in --videos. Rows whose
video is missing are left out and listed in missing_<split>.txt. Set DATA.PATH_PREFIX to --videos.
A k400 test.csv without a label column (the original release) becomes test_unlabelled.txt (for
tools/predict.py --input) instead of test.csv.
ucf101 / hmdb51: the official split files (classInd.txt, trainlist0N.txt, testlist0N.txt; <class>_test_splitN.txt)
become <out>/splitN/{train,val,test}.csv (val: --val-fraction of the train split, held out by source video).
"""
import argparse
import logging
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["k400", "ssv2", "ucf101", "hmdb51"])
    p.add_argument("--annotations", required=True, help="folder of the official annotation files")
    p.add_argument("--videos", required=True, help="folder of the videos (DATA.PATH_PREFIX)")
    p.add_argument("--out", default=None, help="output folder (default data_lists/<dataset>)")
    p.add_argument("--ext", default=".mp4", help="k400 video extension")
    p.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3], help="ucf101/hmdb51 splits to write")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="ucf101/hmdb51: share of the train split's source videos held out as val.csv (0: none)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    from video_iared.data.annotations import AnnotationError
    from video_iared.data.prepare import format_report, prepare_kinetics_lists, prepare_ssv2_lists
    from video_iared.data.prepare_splits import prepare_hmdb51_lists, prepare_ucf101_lists

    out = args.out or os.path.join("data_lists", args.dataset)
    if not 0 <= args.val_fraction < 1:
        p.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    try:
        if args.dataset == "k400":
            report = prepare_kinetics_lists(args.annotations, args.videos, out, ext=args.ext)
        elif args.dataset == "ssv2":
            report = prepare_ssv2_lists(args.annotations, args.videos, out)
        else:
            fn = prepare_ucf101_lists if args.dataset == "ucf101" else prepare_hmdb51_lists
            report = fn(args.annotations, args.videos, out, args.splits, args.val_fraction)
    except AnnotationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
