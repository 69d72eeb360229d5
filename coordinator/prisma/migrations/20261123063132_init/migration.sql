-- CreateEnum
CREATE TYPE "study_status" AS ENUM ('draft', 'running', 'completed', 'failed');

-- CreateEnum
CREATE TYPE "round_status" AS ENUM ('open', 'aggregating', 'closed', 'failed');

-- CreateEnum
CREATE TYPE "metric_kind" AS ENUM ('train', 'validation');

-- CreateTable
CREATE TABLE "study" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "status" "study_status" NOT NULL DEFAULT 'draft',
    "spec" JSONB NOT NULL,
    "spec_hash" TEXT NOT NULL,
    "total_rounds" INTEGER NOT NULL,
    "current_round" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    "started_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),
    "error" TEXT,

    CONSTRAINT "study_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "site" (
    "id" TEXT NOT NULL,
    "registered_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "status" TEXT NOT NULL DEFAULT 'registered',
    "certificate_fingerprint" TEXT,

    CONSTRAINT "site_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "round" (
    "id" TEXT NOT NULL,
    "study_id" TEXT NOT NULL,
    "number" INTEGER NOT NULL,
    "status" "round_status" NOT NULL DEFAULT 'open',
    "opened_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "closed_at" TIMESTAMP(3),
    "deadline_at" TIMESTAMP(3),
    "participants" INTEGER NOT NULL DEFAULT 0,
    "aggregate_sha256" TEXT,
    "assigned_sites" TEXT[] DEFAULT ARRAY[]::TEXT[],

    CONSTRAINT "round_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "model_version" (
    "id" TEXT NOT NULL,
    "study_id" TEXT NOT NULL,
    "round" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "size_bytes" INTEGER NOT NULL,
    "parameter_count" INTEGER NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "model_version_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "update_receipt" (
    "id" TEXT NOT NULL,
    "round_id" TEXT NOT NULL,
    "site_id" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "size_bytes" INTEGER NOT NULL,
    "encoding" TEXT NOT NULL,
    "received_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "update_receipt_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "round_metric" (
    "id" TEXT NOT NULL,
    "round_id" TEXT NOT NULL,
    "site_id" TEXT NOT NULL,
    "kind" "metric_kind" NOT NULL,
    "loss" DOUBLE PRECISION NOT NULL,
    "accuracy" DOUBLE PRECISION NOT NULL,
    "samples" INTEGER,
    "reported_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "round_metric_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "round_study_id_number_key" ON "round"("study_id", "number");

-- CreateIndex
CREATE UNIQUE INDEX "model_version_study_id_round_key" ON "model_version"("study_id", "round");

-- CreateIndex
CREATE INDEX "update_receipt_site_id_idx" ON "update_receipt"("site_id");

-- CreateIndex
CREATE UNIQUE INDEX "update_receipt_round_id_site_id_key" ON "update_receipt"("round_id", "site_id");

-- CreateIndex
CREATE INDEX "round_metric_site_id_idx" ON "round_metric"("site_id");

-- CreateIndex
CREATE UNIQUE INDEX "round_metric_round_id_site_id_kind_key" ON "round_metric"("round_id", "site_id", "kind");

-- AddForeignKey
ALTER TABLE "round" ADD CONSTRAINT "round_study_id_fkey" FOREIGN KEY ("study_id") REFERENCES "study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "model_version" ADD CONSTRAINT "model_version_study_id_fkey" FOREIGN KEY ("study_id") REFERENCES "study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "update_receipt" ADD CONSTRAINT "update_receipt_round_id_fkey" FOREIGN KEY ("round_id") REFERENCES "round"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "update_receipt" ADD CONSTRAINT "update_receipt_site_id_fkey" FOREIGN KEY ("site_id") REFERENCES "site"("id") ON DELETE NO ACTION ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "round_metric" ADD CONSTRAINT "round_metric_round_id_fkey" FOREIGN KEY ("round_id") REFERENCES "round"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "round_metric" ADD CONSTRAINT "round_metric_site_id_fkey" FOREIGN KEY ("site_id") REFERENCES "site"("id") ON DELETE NO ACTION ON UPDATE CASCADE;
