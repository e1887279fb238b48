"""Generate sample interactions (string ids, power-law popularity, planted taste).

    python scripts/generate_data.py data/sample/interactions.csv --users 3000 --items 800 --interactions 100000
"""

import argparse

from recsys_spark.storage.sample_files import write_interactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="output file (.csv or .parquet)")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--interactions", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    fmt = "parquet" if args.path.endswith(".parquet") else "csv"
    path = write_interactions(args.path, fmt, n_users=args.users, n_items=args.items,
                              n_interactions=args.interactions, seed=args.seed)
    print(f"wrote {args.interactions:,} interactions to {path}")


if __name__ == "__main__":
    main()
