#!/usr/bin/python3
"""A client of the seed's gRPC interface (seed_sospdemo.proto), generated at test time with
grpc_tools.protoc (Debian python3-grpc-tools, nothing downloaded), run against our function
tier. Usage: seed_client.py <host:port> <work dir> [<ca.pem> <token file>]: with a CA the
channel is grpc.ssl_channel_credentials(CA) and every call carries the metadata
`authorization: Bearer <token>`, as any stock gRPC client would. Prints one line per step:

  install:<error_code>:<error_desc>
  whatsthis:<desc>
  invalid:<status name>:<details>       (a stream whose first message is data)
  remove:<error_code>:<error_desc>

Exit 77 when grpcio or grpc_tools is missing (the C test then skips).
"""
import os
import shutil
import sys

CHUNK = 32 * 1024


def photo_bytes():
    return bytes((i * 7 + 3) % 256 for i in range(70000))


def main():
    target, work = sys.argv[1], sys.argv[2]
    ca_file = sys.argv[3] if len(sys.argv) > 3 else None
    token_file = sys.argv[4] if len(sys.argv) > 4 else None
    try:
        import grpc
        from grpc_tools import protoc
    except ImportError as exc:
        print("skip: %s" % exc)
        return 77
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(os.path.join(here, "seed_sospdemo.proto"), work)
    rc = protoc.main(["protoc", "-I" + work, "--python_out=" + work,
                      "--grpc_python_out=" + work, os.path.join(work, "seed_sospdemo.proto")])
    if rc != 0:
        print("protoc failed: %d" % rc)
        return 1
    sys.path.insert(0, work)
    import seed_sospdemo_pb2 as pb
    import seed_sospdemo_pb2_grpc as pb_grpc

    metadata = None
    if ca_file:
        with open(ca_file, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(target)
    if token_file:
        with open(token_file) as f:
            metadata = [("authorization", "Bearer " + f.read().strip())]
    stub = pb_grpc.FunctionTierServiceStub(channel)

    synset, symbol, params = b"n0001 rose\n", b"{}", bytes(range(256)) * 300

    def model_stream():
        md = pb.InstallModelRequest.ModelMetadata(tag=7, synset_size=len(synset),
                                                  symbol_size=len(symbol),
                                                  params_size=len(params))
        yield pb.InstallModelRequest(metadata=md)
        data = synset + symbol + params
        for off in range(0, len(data), CHUNK):
            yield pb.InstallModelRequest(file_data=data[off:off + CHUNK])

    reply = stub.InstallModel(model_stream(), timeout=20, metadata=metadata)
    print("install:%d:%s" % (reply.error_code, reply.error_desc))

    photo = photo_bytes()

    def photo_stream():
        md = pb.PhotoRequest.PhotoMetadata(photo_size=len(photo), tags=[7])
        yield pb.PhotoRequest(metadata=md)
        for off in range(0, len(photo), CHUNK):
            yield pb.PhotoRequest(file_data=photo[off:off + CHUNK])

    print("whatsthis:%s" % stub.Whatsthis(photo_stream(), timeout=20, metadata=metadata).desc)

    try:
        stub.Whatsthis(iter([pb.PhotoRequest(file_data=b"xx")]), timeout=20, metadata=metadata)
        print("invalid:OK:")
    except grpc.RpcError as err:
        print("invalid:%s:%s" % (err.code().name, err.details()))

    reply = stub.RemoveModel(pb.RemoveModelRequest(tag=7), timeout=20, metadata=metadata)
    print("remove:%d:%s" % (reply.error_code, reply.error_desc))
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
