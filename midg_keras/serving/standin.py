"""Runs the local TF Serving STAND-INS (REST and gRPC) on 127.0.0.1; not TF Serving.

For demos and tests where `tensorflow_model_server` cannot be installed. Flags follow
`tensorflow_model_server`'s names:

    python -m midg_keras.serving.standin --model_base_path=exports/midg --model_name=midg \
        --rest_api_port=8501 --port=8500

Production serving is `docker run tensorflow/serving` (BUILD.md).
"""

import argparse
import sys
import threading

from midg_keras.serving.servable import Servable


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m midg_keras.serving.standin")
    parser.add_argument("--model_base_path", required=True, help="the --export_dir root.")
    parser.add_argument("--model_name", default="midg")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="0 = no REST stand-in.")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port; 0 = no gRPC stand-in.")
    parser.add_argument("--verbose", action="store_true", help="log every REST request.")
    args = parser.parse_args(argv)

    servable = Servable(args.model_base_path, name=args.model_name)
    print(
        f"STAND-IN for tensorflow_model_server (not TF Serving): model {servable.name} "
        f"version {servable.version} from {servable.path}",
        flush=True,
    )
    stoppers = []
    if args.rest_api_port:
        from midg_keras.serving.rest_standin import RestStandin

        rest = RestStandin(servable, port=args.rest_api_port, verbose=args.verbose).start()
        stoppers.append(rest.stop)
        print(f"REST stand-in: POST {rest.predict_url}", flush=True)
    if args.port:
        from midg_keras.serving.grpc_standin import start_grpc_standin

        server, port = start_grpc_standin(servable, port=args.port)
        stoppers.append(lambda: server.stop(grace=None))
        print(f"gRPC stand-in: PredictionService on 127.0.0.1:{port}", flush=True)
    if not stoppers:
        parser.error("both --rest_api_port and --port are 0: nothing to serve.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for stop in stoppers:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
